"The docs build offline: nbdev-proc-nbs + tools/docs_preview.py render every exported symbol with its signature and docstring"
import html, importlib, inspect, re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ['core', 'engine', 'schedule', 'callbacks', 'wrapper', 'report', 'diagnostics', 'export', 'data', 'experiment', 'cli', 'replicate', 'sharded']

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    r = subprocess.run(['nbdev-proc-nbs'], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path_factory.mktemp('site')
    r = subprocess.run([sys.executable, 'tools/docs_preview.py', '--out', str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out

def _text(p): return html.unescape(re.sub(r'<[^>]+>', '', p.read_text()))

def _page(mod):
    from fastsparse._modidx import d
    return {k.split('.')[-1]: v[0].split('.html')[0] for k, v in d['syms'][f'fastsparse.{mod}'].items()}

@pytest.mark.parametrize('mod', MODULES)
def test_every_exported_symbol_documented(site, mod):
    m = importlib.import_module(f'fastsparse.{mod}')
    pages, cache = _page(mod), {}
    missing = []
    for name in m.__all__:
        obj = getattr(m, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or getattr(obj, '__module__', '') != m.__name__: continue
        page = pages.get(name)
        if page is None: missing.append(f'{name}: no page in _modidx'); continue
        nb = next(site.glob(f'*{page.split("/")[-1]}.html'), None) or next(p for p in site.glob('*.html') if p.stem.endswith(page))
        txt = cache.setdefault(nb, _text(nb))
        doc = re.sub(r'`', '', (inspect.getdoc(obj) or '').splitlines()[0])[:60]
        sig = f'def {name}('  # show_doc renders a class by its __init__ signature under the class name
        if sig not in txt: missing.append(f'{name}: signature not on {nb.name}')
        if doc and doc not in txt: missing.append(f'{name}: docstring not on {nb.name}')
    assert not missing, missing

def test_pages_exist(site):
    names = {p.stem for p in site.glob('*.html')}
    for page in ('home', '00_core', '01_callbacks', '04_pytorch', '07_under_the_hood', '08_customization', '12_finetune'):
        assert page in names, page
    assert 'Under the hood' in _text(site/'07_under_the_hood.html')
