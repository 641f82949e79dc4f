"""README.md: the same text as nbs/index.ipynb, the quick-start commands CI runs, tables that match their sources
(the Performance page, the replication runs), the version, links to pages that exist, and Python blocks that run"""
import json, os, re, subprocess, sys, textwrap
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT/'README.md').read_text()
SITE = 'https://fastsparse.github.io/fastsparse/'

def _index_text():
    nb = json.loads((ROOT/'nbs'/'index.ipynb').read_text())
    return '\n\n'.join(''.join(c['source']).strip() for c in nb['cells'] if c['cell_type'] == 'markdown')

def _section(text, title): return text.split(f'\n## {title}\n', 1)[1].split('\n## ', 1)[0]
def _table(text): return [l for l in text.split('\n') if l.startswith('|')]

def test_readme_matches_index():
    assert _index_text().strip() == README.strip(), "README.md and nbs/index.ipynb differ: `python tools/sync_index.py && nbdev-clean`"

def test_ci_runs_readme_test_command():
    cmds = re.findall(r'```bash\n(.*?)\n```', README.split('## Quick start')[1], flags=re.S)[:2]
    assert len(cmds) == 2
    assert cmds[1].strip() in (ROOT/'.ci'/'run').read_text()

def test_performance_table_is_the_pages_summary():
    "README's performance table is the Summary table of the Performance page, and each of its rows is on that page"
    nb = json.loads((ROOT/'nbs'/'14_performance.ipynb').read_text())
    page = '\n\n'.join(''.join(c['source']) for c in nb['cells'])
    rows = _table(_section(README, 'Performance'))
    assert len(rows) >= 3
    assert rows == _table(_section(page, 'Summary'))
    for r in rows: assert r in page

def test_results_table_is_computed_from_the_runs():
    "README's results table is what `markdown_table` makes of the 20-epoch LeNet-300-100 runs in replication/runs.jsonl"
    from fastsparse.replicate import load_runs, summarise, markdown_table
    rows = [r for r in summarise(load_runs(ROOT/'replication')) if r['model'] == 'lenet300' and r['epochs'] == 20 and 'truly' not in r['method']]
    assert _table(_section(README, 'Results')) == markdown_table(rows).split('\n')

def test_version_named():
    import fastsparse
    v = fastsparse.__version__
    assert f'This is fastsparse **{v}**' in README
    assert f'dist/fastsparse-{v}-py3-none-any.whl' in README

def test_links_to_existing_pages():
    "Every link to the docs site names a page that a notebook in nbs/ produces (nbdev strips the numeric prefix)"
    pages = {re.sub(r'^\d+[a-zA-Z0-9]*_', '', p.stem.lower()) + '.html' for p in (ROOT/'nbs').glob('*.ipynb')}
    links = re.findall(re.escape(SITE) + r'([\w.-]*)', README)
    assert len(links) > 10
    missing = [l for l in links if l and l not in pages]
    assert not missing, missing

# The Python blocks run in order in one fresh interpreter, as a reader would paste them into a notebook. Where they
# name the full Fashion-MNIST, the harness below (and only it) shortens the data set to its first 6,400 training and
# 2,000 test images, so the five epochs of each example take seconds; what the blocks say is run as written.
HARNESS = """
import fastsparse.data as _data
_full = _data.fashion_mnist
def _first_images(path=None):
    xt, yt, xv, yv = _full(path)
    return xt[:6400], yt[:6400], xv[:2000], yv[:2000]
_data.fashion_mnist = _first_images

def _density(model):
    "Model sparsity over every Linear weight, masked or dense (ERK leaves small layers dense, without a mask), rounded to 4 places"
    import torch
    ls = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    active = sum(int(l.weight_mask.sum()) if hasattr(l, 'weight_mask') else l.weight.numel() for l in ls)
    return round(1 - active / sum(l.weight.numel() for l in ls), 4)
"""
# Checks run after the block that contains the key
CHECKS = {
    'DynamicSparseTrainingCallback(': """
assert _density(learn.model) == 0.9, _density(learn.model)
assert cbs[0].n_updates > 0, cbs[0].n_updates
acc = float(learn.validate()[1]); assert acc > 0.7, acc
print('fastai block: accuracy', acc)
""",
    'DynamicSparseTrainingOptimizerWrapper(model, opt, batches_per_update=100, **RigL_presets)': """
assert _density(model) == 0.95, _density(model)
assert sparse_opt.n_updates > 0 and sparse_opt.n_step == n_steps, (sparse_opt.n_updates, sparse_opt.n_step)
xv, yv = _first_images()[2:]
with torch.no_grad(): acc = (model(torch.tensor(xv).flatten(1) / 255.).argmax(1) == torch.tensor(yv)).float().mean().item()
assert acc > 0.6, acc  # 95 % sparse, five epochs of 6,400 images
print('PyTorch block: accuracy', acc)
""",
    'truly_sparse(model)': """
from fastsparse import TrulySparseLinear
assert isinstance(model[0], TrulySparseLinear) and isinstance(model[2], TrulySparseLinear)  # ERK leaves the 10-wide output layer dense
assert not any(hasattr(m, 'weight_mask') for m in model)  # no masked Linear left
for step, (xb, yb) in zip(range(101), (b for _ in range(epochs) for b in train_loader)):
    nn.functional.cross_entropy(model(xb), yb).backward(); sparse_opt.step(); sparse_opt.zero_grad()
assert sparse_opt.n_updates == 1, sparse_opt.n_updates
print('truly sparse block: density', sum(m.n_active for m in model if isinstance(m, TrulySparseLinear)) / sum(m.numel for m in model if isinstance(m, TrulySparseLinear)))
""",
}

def python_blocks(text=README): return re.findall(r'```python\n(.*?)\n```', text, flags=re.S)

def test_python_blocks_run(tmp_path):
    from fastsparse.data import fashion_mnist_path
    if not (fashion_mnist_path/'train-images-idx3-ubyte.gz').exists() and not (fashion_mnist_path/'train-images-idx3-ubyte').exists():
        pytest.skip(f"Fashion-MNIST is not in {fashion_mnist_path} (apt-get install dataset-fashion-mnist, or set FASHION_MNIST_PATH)")
    blocks = python_blocks()
    assert len(blocks) >= 3
    for key in CHECKS: assert any(key in b for b in blocks), f"no README block contains {key!r}: update CHECKS"
    parts = [HARNESS] + [b + '\n' + ''.join(c for k, c in CHECKS.items() if k in b) for b in blocks]
    script = tmp_path/'readme_blocks.py'
    script.write_text('\n'.join(f'# --- block {i}\n{p}' for i, p in enumerate(parts)))
    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    for line in ('fastai block: accuracy', 'PyTorch block: accuracy', 'truly sparse block: density'): assert line in r.stdout, r.stdout[-3000:]
