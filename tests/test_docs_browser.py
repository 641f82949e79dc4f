"""Headless Chromium opens every page of the offline docs preview (built without Fashion-MNIST, the `docs_site`
fixture) from a local web server, as a reader would: no errors, every image loads, internal links resolve, no raw
front matter, the Replication page shows the results table and plots, the callbacks page an example's output.
A screenshot of every page goes to docs_screenshots/ (git-ignored).

Needs Chromium (Debian's `chromium`; FASTSPARSE_CHROMIUM names another binary) and the `playwright` Python package
(the `dev` extra; it drives that Chromium, `playwright install` is not needed). Without them the test is skipped,
unless FASTSPARSE_REQUIRE_BROWSER=1 (CI sets it), which turns the skip into a failure."""
import functools, http.server, os, re, shutil, threading
from pathlib import Path
from urllib.parse import urldefrag, urlparse
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT/'docs_screenshots'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']
MAX_SHOT_HEIGHT = 8000  # px: long API pages are cut there

def _chromium():
    for c in (os.environ.get('FASTSPARSE_CHROMIUM'), '/usr/bin/chromium', shutil.which('chromium'), shutil.which('chromium-browser'), shutil.which('google-chrome')):
        if c and Path(c).exists(): return c

def _unavailable(why):
    if os.environ.get('FASTSPARSE_REQUIRE_BROWSER') == '1': pytest.fail(f"FASTSPARSE_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(f"browser test skipped: {why} (apt-get install chromium, pip install playwright; FASTSPARSE_REQUIRE_BROWSER=1 makes this a failure)")

@pytest.fixture(scope='module')
def browser():
    try: from playwright.sync_api import sync_playwright
    except ImportError: _unavailable("the playwright package is not installed")
    exe = _chromium()
    if exe is None: _unavailable("no Chromium found")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=FLAGS)  # playwright gives it a fresh profile (user data dir) each time
        yield b
        b.close()

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

@pytest.fixture(scope='module')
def served(docs_site):
    "The preview on a local web server (a thread of this process): its base URL"
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(docs_site)))
    t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
    yield f'http://127.0.0.1:{srv.server_address[1]}/'
    srv.shutdown(); srv.server_close()

PAGE_JS = """() => ({
  title: document.title,
  h1: (document.querySelector('h1.title') || {}).innerText || '',
  text: document.body.innerText,
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  images: [...document.images].map(i => ({src: i.src.slice(0, 80), ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth})),
  tables: [...document.querySelectorAll('table')].map(t => t.innerText),
  output_tables: [...document.querySelectorAll('.output_area table')].map(t => t.innerText),
  sidebar: [...document.querySelectorAll('#sidebar ul a[href]')].map(a => [a.getAttribute('href'), a.innerText]),
  height: document.documentElement.scrollHeight,
})"""

@pytest.fixture(scope='module')
def pages(browser, served, docs_site):
    "Every page, opened once: what it showed, the errors it logged and the local requests that failed; screenshots saved"
    shutil.rmtree(SHOTS, ignore_errors=True); SHOTS.mkdir()
    res = {}
    for f in sorted(docs_site.glob('*.html')):
        pg = browser.new_page(viewport={'width': 1280, 'height': 900})
        errors = []
        pg.on('console', lambda m: m.type == 'error' and errors.append(f'console: {m.text}'))
        pg.on('pageerror', lambda e: errors.append(f'page error: {e}'))
        pg.on('requestfailed', lambda r: errors.append(f'failed: {r.url} {r.failure}'))
        pg.on('response', lambda r: r.status >= 400 and errors.append(f'HTTP {r.status}: {r.url}'))
        pg.goto(served + f.name, wait_until='load')
        info = pg.evaluate(PAGE_JS)
        info['errors'] = errors
        pg.screenshot(path=str(SHOTS/f'{f.stem}.png'), full_page=True, clip=dict(x=0, y=0, width=1280, height=min(info['height'], MAX_SHOT_HEIGHT)))
        pg.close()
        res[f.name] = info
    return res

def test_every_page_loads_without_errors(pages):
    bad = {n: p['errors'] for n, p in pages.items() if p['errors']}
    assert not bad, bad

def test_every_image_loads(pages):
    bad = {n: [i['src'] for i in p['images'] if not i['ok']] for n, p in pages.items()}
    assert not {n: v for n, v in bad.items() if v}, bad

def test_internal_links_resolve(pages, served):
    "Every link to a local page names a page that exists, and every #anchor an element of that page"
    bad = []
    for n, p in pages.items():
        for href in p['links']:
            url, frag = urldefrag(href)
            if not url.startswith(served): continue
            target = urlparse(url).path.rsplit('/', 1)[-1] or 'index.html'
            if target not in pages: bad.append((n, href)); continue
            if frag and frag not in pages[target]['ids']: bad.append((n, href))
    assert not bad, bad[:30]

def test_titles_and_no_raw_quarto_text(pages):
    "Each page shows its front matter as title (distinct across pages) and description, not as text; no `{target=` text"
    titles = [p['h1'] for p in pages.values()]
    assert all(titles) and len(set(titles)) == len(titles), titles
    for n, p in pages.items():
        assert p['title'].startswith(p['h1']), (n, p['title'])
        assert '{target=' not in p['text'] and 'output-file:' not in p['text'], n
        assert not re.search(r'^---\s*$\s*(description|title):', p['text'], re.M), n

def test_sidebar_lists_every_page(pages):
    links = pages['index.html']['sidebar']
    assert {h for h, _ in links} == set(pages), set(pages) ^ {h for h, _ in links}
    texts = [t for _, t in links]
    assert len(set(texts)) == len(texts), texts
    assert [h for h, _ in links][:2] == ['index.html', 'get_started.html']

def test_replication_page_shows_results_and_plots(pages):
    p = pages['replication.html']
    ours = [t for t in p['output_tables'] if 'lenet300' in t and 'mean density' in t]
    assert ours and '90.06 ± 0.04 (n=3)' in ours[0], p['output_tables'][:2]
    assert sum(i['ok'] and i['w'] > 300 for i in p['images']) >= 3, p['images']

def test_callbacks_page_shows_example_output(pages):
    t = [t for t in pages['callbacks.html']['output_tables'] if 'train_loss' in t and 'density' in t]
    assert t, pages['callbacks.html']['output_tables']

def test_get_started_shows_saved_outputs(pages):
    p = pages['get_started.html']
    assert 'validation accuracy' in p['text'] and 'train_loss' in p['text']
    assert sum(i['ok'] for i in p['images']) >= 2

def test_screenshots_saved(pages):
    assert {f.stem for f in SHOTS.glob('*.png')} == {Path(n).stem for n in pages}
