"The layering: a torch-only layer that works without fastai (and without transformers), a fastai adapter loaded on first use, optional integrations (fastsparse.hf) that need neither fastai nor each other, nothing patched at import, no import cycles"
import ast, subprocess, sys, textwrap
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT/'fastsparse'
TORCH_LAYER = ['core', 'engine', 'schedule', 'wrapper', 'report', 'export', 'sparse_linear', 'sharded']
ADAPTER = ['callbacks', 'diagnostics', 'data', 'experiment']
COMMANDS = ['cli', 'replicate']
INTEGRATIONS = ['hf']  # optional: imported only by the user, each needing its own extra (transformers), never fastai

def run_py(code:str, prefix:str=''):
    "Run `prefix` + `code` in a fresh interpreter; fail with its output if it fails"
    res = subprocess.run([sys.executable, '-c', prefix + textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout

def blocker(*pkgs:str)->str:
    "Code that makes importing any of `pkgs` fail, as on a machine without them"
    return f'''
import sys, importlib.abc
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {pkgs!r}: raise ImportError(f"No module named {{name!r}} (blocked by the test)")
sys.meta_path.insert(0, _Blocked())
'''

BLOCK_FASTAI = blocker('fastai', 'fastcore')
BLOCK_OPTIONAL = blocker('fastai', 'fastcore', 'transformers', 'accelerate', 'timm')

def test_torch_layer_works_without_fastai():
    out = run_py('''
    import torch
    from torch import nn
    import fastsparse
    from fastsparse import (sparsify_model, erdos_renyi_sparsity, DynamicSparseTrainingOptimizerWrapper, SET_presets, RigL_presets,
                            SNFS_presets, DropGrowEngine, DropGrowSchedule, sparse_report, format_sparse_report, inference_flops, export_sparse,
                            weights_and_masks)
    for mod in ('core', 'engine', 'schedule', 'wrapper', 'report', 'export', 'sparse_linear', 'sharded'): __import__(f'fastsparse.{mod}')
    assert not any(m.split('.')[0] in ('fastai', 'fastcore', 'transformers', 'accelerate', 'timm') for m in sys.modules), "a torch-layer module imported fastai/fastcore or an optional package"
    for preset in (SET_presets, RigL_presets, SNFS_presets):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 5))
        sparsify_model(model, 0.8, sparse_f=erdos_renyi_sparsity)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        so = DynamicSparseTrainingOptimizerWrapper(model, opt, batches_per_update=3, total_steps=30, seed=0, **preset)
        b0 = so.engine.budgets()
        for t in range(30):
            x = torch.randn(16, 20); loss = nn.functional.cross_entropy(model(x), torch.randint(0, 5, (16,)))
            loss.backward(); so.step(); so.zero_grad()
        assert so.n_updates == 7 and sum(so.engine.budgets()) == sum(b0)  # SNFS moves budgets between layers, keeping the total
        if preset is not SNFS_presets: assert so.engine.budgets() == b0
        for w, m in zip(*weights_and_masks(model)): assert w[~m].abs().sum() == 0
    print(format_sparse_report(sparse_report(model, flops_input=torch.zeros(1, 20))))
    assert inference_flops(model, torch.zeros(1, 20))[1] < 20 * 40 + 40 * 5
    assert torch.allclose(export_sparse(model)(torch.ones(2, 20)), model(torch.ones(2, 20)), atol=1e-5)
    try: fastsparse.DynamicSparseTrainingCallback
    except ImportError as e: print('adapter needs fastai:', e)
    else: raise AssertionError('the fastai adapter imported without fastai')
    print('ok')
    ''', prefix=BLOCK_OPTIONAL)
    assert out.strip().endswith('ok')

def test_hf_integration_without_fastai():
    pytest.importorskip('transformers')
    out = run_py('''
    import tempfile, torch, transformers
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    import fastsparse.hf
    from fastsparse.hf import sparsify_trainer, find_sparse_wrapper
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                                     max_position_embeddings=16, num_labels=2))
    ds = [dict(input_ids=torch.randint(0, 50, (8,)), labels=i % 2) for i in range(16)]
    args = TrainingArguments(tempfile.mkdtemp(), max_steps=4, per_device_train_batch_size=4, report_to=[], use_cpu=True, save_strategy='no',
                             disable_tqdm=True, logging_strategy='no')
    trainer = sparsify_trainer(Trainer(model=model, args=args, train_dataset=ds), 0.8, 'set', batches_per_update=2, seed=0)
    trainer.train()
    assert find_sparse_wrapper(trainer.optimizer).n_updates == 1
    assert not any(m.split('.')[0] in ('fastai', 'fastcore') for m in sys.modules), "fastsparse.hf imported fastai/fastcore"
    print('ok')
    ''', prefix=BLOCK_FASTAI)
    assert out.strip().endswith('ok')

def test_hf_needs_transformers():
    out = run_py('''
    import fastsparse
    try: import fastsparse.hf
    except ImportError as e: print(e)
    else: raise AssertionError('fastsparse.hf imported without transformers')
    ''', prefix=BLOCK_OPTIONAL)
    assert "pip install 'fastsparse[hf]'" in out

def test_import_changes_nothing():
    run_py('''
    import sys, torch
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks
    from fastai.vision.all import *  # fastai's own modules patch Learner when imported: load them all first
    import fastai.optimizer as fo, fastai.distributed as fd
    from fastai.learner import Learner
    before = (fo.Optimizer.step, fd.DistributedDL._broadcast, dict(vars(Learner)), len(_global_optimizer_post_hooks), len(_global_optimizer_pre_hooks),
              dict(torch.nn.modules.module._global_forward_pre_hooks), dict(torch.nn.modules.module._global_forward_hooks))
    import fastsparse
    from fastsparse import *
    import fastsparse.core, fastsparse.engine, fastsparse.wrapper
    after = (fo.Optimizer.step, fd.DistributedDL._broadcast, dict(vars(Learner)), len(_global_optimizer_post_hooks), len(_global_optimizer_pre_hooks),
             dict(torch.nn.modules.module._global_forward_pre_hooks), dict(torch.nn.modules.module._global_forward_hooks))
    # `from fastsparse import *` loaded the adapter, which adds Learner.sparsify/sparse_report (its documented conveniences) and nothing else
    added = set(after[2]) - set(before[2])
    assert added <= {'sparsify', 'sparse_report'}, added
    assert after[:2] == before[:2] and after[3:] == before[3:], 'importing fastsparse changed torch or fastai'
    ''')

def test_adapter_is_lazy():
    run_py('''
    import sys
    import fastsparse as sparse
    assert not any(m.startswith('fastai') for m in sys.modules), [m for m in sys.modules if m.startswith('fastai')][:5]
    assert not any(m.split('.')[0] in ('transformers', 'accelerate', 'timm') for m in sys.modules), 'import fastsparse imported an optional package'
    assert 'fastsparse.hf' not in sys.modules
    assert 'fastsparse.callbacks' not in sys.modules
    cb = sparse.DynamicSparseTrainingCallback(**sparse.RigL_presets)
    assert 'fastsparse.callbacks' in sys.modules
    import fastsparse.callbacks, fastsparse.diagnostics, fastsparse.data
    for mod, names in sparse._adapter.items(): assert sorted(names) == sorted(sys.modules[mod].__all__), mod
    ''')

def _imports(mod:str)->set[str]:
    "fastsparse modules and top-level packages imported by `fastsparse/<mod>.py` (anywhere in the file)"
    res = set()
    for node in ast.walk(ast.parse((PKG/f'{mod}.py').read_text())):
        if isinstance(node, ast.ImportFrom):
            name = ('fastsparse.' + node.module if node.level and node.module else 'fastsparse' if node.level else node.module)
            res.add(name)
        elif isinstance(node, ast.Import): res |= {a.name for a in node.names}
    return res

@pytest.mark.parametrize('mod', TORCH_LAYER + ADAPTER + COMMANDS + INTEGRATIONS)
def test_layers(mod):
    imps = _imports(mod)
    ours = {i.split('.')[1] for i in imps if i.startswith('fastsparse.')}
    assert not ours & {'cli'}, f"{mod} imports the command line"
    if mod in TORCH_LAYER:
        assert not {i.split('.')[0] for i in imps} & {'fastai', 'fastcore'}, f"{mod} (torch layer) imports fastai/fastcore"
        assert not ours & set(ADAPTER + COMMANDS), f"{mod} (torch layer) imports {ours & set(ADAPTER + COMMANDS)}"
    if mod in ADAPTER: assert not ours & set(COMMANDS), f"{mod} (fastai adapter) imports a command"
    if mod in INTEGRATIONS:
        assert not {i.split('.')[0] for i in imps} & {'fastai', 'fastcore'}, f"{mod} (optional integration) imports fastai/fastcore"
        assert not ours & set(ADAPTER + COMMANDS + INTEGRATIONS), f"{mod} (optional integration) imports {ours & set(ADAPTER + COMMANDS + INTEGRATIONS)}"
    if mod in TORCH_LAYER + ADAPTER + COMMANDS: assert not ours & set(INTEGRATIONS), f"{mod} imports an optional integration"
    if mod == 'replicate': assert 'cli' not in ours

def test_no_import_cycle():
    graph = {m: {i.split('.')[1] for i in _imports(m) if i.startswith('fastsparse.')} - {m} for m in TORCH_LAYER + ADAPTER + COMMANDS + INTEGRATIONS}  # a module importing itself (replicate, for spawned workers) is no cycle
    def visit(m, path):
        assert m not in path, f"import cycle: {' -> '.join(path + [m])}"
        for n in graph.get(m, ()): visit(n, path + [m])
    for m in graph: visit(m, [])
