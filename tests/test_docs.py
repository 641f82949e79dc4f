"""The docs build offline and without Fashion-MNIST (`nbdev-proc-nbs` + tools/docs_preview.py, the `docs_site` fixture):
every exported symbol is documented with its signature and docstring, pages have Quarto's names and distinct titles,
and pages show their results"""
import html, importlib, inspect, json, re, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ['core', 'engine', 'schedule', 'callbacks', 'wrapper', 'report', 'diagnostics', 'export', 'data', 'experiment', 'cli', 'replicate', 'sharded', 'hf']
sys.path.insert(0, str(ROOT/'tools'))
from docs_preview import out_name, sidebar_entries, front_matter

def _text(p): return html.unescape(re.sub(r'<[^>]+>', '', p.read_text()))
def _notebooks(): return sorted((ROOT/'nbs').glob('*.ipynb'))

def _page(mod):
    from fastsparse._modidx import d
    return {k.split('.')[-1]: v[0].split('.html')[0] for k, v in d['syms'][f'fastsparse.{mod}'].items()}

@pytest.mark.parametrize('mod', MODULES)
def test_every_exported_symbol_documented(docs_site, mod):
    m = importlib.import_module(f'fastsparse.{mod}')
    pages, cache = _page(mod), {}
    missing = []
    for name in m.__all__:
        obj = getattr(m, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or getattr(obj, '__module__', '') != m.__name__: continue
        page = pages.get(name)
        if page is None: missing.append(f'{name}: no page in _modidx'); continue
        nb = docs_site/f'{page}.html'
        if not nb.exists(): missing.append(f'{name}: {nb.name} not built'); continue
        txt = cache.setdefault(nb, _text(nb))
        doc = re.sub(r'`', '', (inspect.getdoc(obj) or '').splitlines()[0])[:60]
        sig = f'def {name}('  # show_doc renders a class by its __init__ signature under the class name
        if sig not in txt: missing.append(f'{name}: signature not on {nb.name}')
        if doc and doc not in txt: missing.append(f'{name}: docstring not on {nb.name}')
    assert not missing, missing

def test_pages_have_quartos_names(docs_site):
    "One page per notebook, named as Quarto names it (numeric prefix stripped); the README is index.html"
    names = {p.name for p in docs_site.glob('*.html')}
    assert names == {out_name(p) for p in _notebooks()}, names ^ {out_name(p) for p in _notebooks()}
    for page in ('index.html', 'get_started.html', 'core.html', 'callbacks.html', 'engine.html', 'pytorch.html', 'under_the_hood.html', 'replication.html', 'performance.html'):
        assert page in names, page
    assert 'Under the hood' in _text(docs_site/'under_the_hood.html')

def test_sidebar_lists_every_page_with_distinct_titles():
    "sidebar.yml names every notebook once, Get started right after the home page, and no two pages share a title"
    entries = sidebar_entries(ROOT/'nbs')
    flat = [x for e in entries for x in (e[1] if isinstance(e, tuple) else [e])]
    assert sorted(flat) == sorted(p.name for p in _notebooks())
    assert flat[:2] == ['index.ipynb', '00a_get_started.ipynb']
    titles = {}
    for p in _notebooks():
        nb = json.loads(p.read_text())
        first = next(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown' and ''.join(c['source']).startswith('# '))
        titles.setdefault(first.split('\n')[0][2:].strip(), []).append(p.name)
    assert all(len(v) == 1 for v in titles.values()), {k: v for k, v in titles.items() if len(v) > 1}

def test_front_matter_becomes_title(docs_site):
    "Every page opens with its title and description as HTML, not as Quarto front matter text"
    for p in docs_site.glob('*.html'):
        h = p.read_text(); t = _text(p)
        assert '<h1 class="title">' in h, p.name
        assert 'output-file:' not in t and '{target=' not in t, p.name
        assert not re.search(r'^---\s*$\s*(description|title):', t, re.M), p.name

def test_links_to_the_site_are_local(docs_site):
    "Links to the project's own docs site point at the local pages; every local page linked exists"
    names = {p.name for p in docs_site.glob('*.html')}
    for p in docs_site.glob('*.html'):
        h = p.read_text()
        assert 'https://fastsparse.github.io/fastsparse/' not in h.replace('href="https://fastsparse.github.io/fastsparse/"', ''), p.name
        for href in re.findall(r'href="([^"#:]+\.html)(?:#[^"]*)?"', h): assert href in names, (p.name, href)

def test_density_monitor_signature(docs_site):
    "DensityMonitor takes no arguments, and its documented signature says so (fastai's Callback would list every event)"
    t = _text(docs_site/'callbacks.html')
    sig = t[t.index('def DensityMonitor('):][:200]
    assert sig.startswith('def DensityMonitor():') and 'after_create' not in sig, sig

def test_pages_show_results(docs_site):
    "Results computed when the docs are built (tables, plots, printed numbers) and saved ones (Get started) are on the pages"
    rep = (docs_site/'replication.html').read_text()
    assert re.search(r'<td[^>]*>lenet300</td>', rep) and '90.06 ± 0.04 (n=3)' in rep and 'markdown_table' in _text(docs_site/'replication.html')
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', rep)) >= 3  # the LeNet-300-100 (20 and 100 epochs) and SET MLP plots
    cb = (docs_site/'callbacks.html').read_text()
    assert re.search(r'<th>train_loss</th>.*<th>density</th>', cb, re.S), 'callbacks example table'
    gs = _text(docs_site/'get_started.html')
    assert 'valid accuracy' in gs and 'validation accuracy' in gs and 'train_loss' in gs
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', (docs_site/'get_started.html').read_text())) >= 2  # a batch and the density plot
    assert 'fastsparse 0.1' in _text(docs_site/'cli.html')  # `fastsparse --version`
    assert re.search(r'<th>density</th>\s*<th>churn</th>\s*<th>itop</th>', (docs_site/'diagnostics.html').read_text())
    mo = (docs_site/'models.html').read_text()  # bench/models.py's saved Markdown output, rendered as tables
    assert re.search(r'<td[^>]*>Conv1D×8</td>', mo) and re.search(r'<td[^>]*>exact \(4 updates\)</td>', mo), 'models tables'
