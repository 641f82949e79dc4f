"""Offline docs preview: render the notebooks processed by `nbdev-proc-nbs` (in `_proc/`) to static HTML with nbconvert.

Quarto (what `nbdev-docs` uses) cannot always be installed; this renders the same processed pages, with the names
Quarto gives them (`00_core.ipynb` -> `core.html`, `index.ipynb` -> `index.html`) and the sidebar of `sidebar.yml`:

    nbdev-proc-nbs && python tools/docs_preview.py      # then open _site_offline/index.html

What Quarto does and nbconvert does not, this does by hand: the front matter becomes the page's title and
description, Pandoc link attributes (`[source](url){target="_blank"}`) become attributes of the link, links to the
project's own docs site (`https://<site-url>/<page>.html`) and to notebooks (`00_core.ipynb`) point at the local page,
headings get Pandoc's identifiers (so `core.html#maskenforcer` works), `#|` cell options (`echo`, `output`,
`include`) are honoured, and the images and other files next to the notebooks are copied. No page loads anything
from the network.
"""
import argparse, html, re, shutil
from pathlib import Path
from save_outputs import terminal_text as _terminal  # console output as a terminal shows it (tools/ is on the path of its scripts)

SKIP_FILES = {'_quarto.yml', 'nbdev.yml', 'sidebar.yml', 'styles.css'}

def front_matter(nb)->dict:
    "The YAML front matter nbdev puts in the first (raw) cell of a processed notebook, or {}"
    import yaml
    c = nb.cells[0] if nb.cells else None
    if c is None or c.cell_type != 'raw': return {}
    m = re.match(r'\s*---\s*\n(.*?)\n---', c.source, re.S)
    return (yaml.safe_load(m.group(1)) or {}) if m else {}

def out_name(nb_path)->str:
    "The HTML file Quarto writes for a notebook: nbdev strips the numeric prefix (`01a_engine.ipynb` -> `engine.html`)"
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', Path(nb_path).name.lower()).rsplit('.', 1)[0] + '.html'

def pandoc_id(text:str)->str:
    "Pandoc's automatic identifier of a heading with plain text `text` (what Quarto's anchors use)"
    s = re.sub(r'[^\w\s.-]', '', text.strip().lower(), flags=re.U)
    s = re.sub(r'\s+', '-', s)
    s = re.sub(r'^[^a-z]+', '', s)
    return s or 'section'

def site_url(proc:Path)->str:
    "The docs site's URL (`site-url` in nbdev.yml), with a trailing slash"
    import yaml
    f = Path(proc)/'nbdev.yml'
    url = ((yaml.safe_load(f.read_text()) or {}).get('website', {}) or {}).get('site-url', '') if f.exists() else ''
    return url.rstrip('/') + '/' if url else ''

_re_attr_link = re.compile(r'\[([^\]\n]*)\]\(([^)\s]+)\)\{([^}\n]*)\}')
_re_md_link = re.compile(r'(\]\()([^)\s]+)(\))')

def _local_url(url:str, site:str, names:dict)->str:
    "`url` pointing at the local page when it is on the docs site or names a notebook"
    if site and url.startswith(site): url = url[len(site):] or 'index.html'
    if re.match(r'^[a-z]+:', url) or url.startswith('#'): return url
    page, sep, anchor = url.partition('#')
    if page.endswith('.ipynb'): page = names.get(Path(page).name, out_name(page))
    return page + sep + anchor

def _attrs(s:str)->str:
    "Pandoc attributes `{target=\"_blank\" style=\"...\" .cls #id}` as HTML attributes"
    out = [f'{k}="{html.escape(v, quote=True)}"' for k, v in re.findall(r'([\w-]+)="([^"]*)"', s)]
    out += [f'class="{c}"' for c in re.findall(r'(?:^|\s)\.([\w-]+)', s)]
    out += [f'id="{i}"' for i in re.findall(r'(?:^|\s)#([\w-]+)', s)]
    return ' '.join(out)

def fix_markdown(md:str, site:str, names:dict)->str:
    "Quarto-flavoured markdown as nbconvert's renderer needs it: attribute links as HTML, local links local"
    def attr_link(m):
        text = re.sub(r'`([^`]+)`', lambda c: f'<code>{html.escape(c.group(1))}</code>', m.group(1))
        return f'<a href="{html.escape(_local_url(m.group(2), site, names), quote=True)}" {_attrs(m.group(3))}>{text}</a>'
    md = _re_attr_link.sub(attr_link, md)
    return _re_md_link.sub(lambda m: m.group(1) + _local_url(m.group(2), site, names) + m.group(3), md)

_re_dir = re.compile(r'^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')

def _cell_options(src:str)->tuple[dict, str]:
    "The `#| key: value` options at the top of a code cell, and the source without them"
    lines, opts = src.splitlines(), {}
    while lines and (m := _re_dir.match(lines[0])): opts[m.group(1)] = m.group(2).strip('"\''); lines.pop(0)
    return opts, '\n'.join(lines)

def _prepare(nb, site:str, names:dict):
    "Drop the front matter cell, honour cell options, fix markdown in cells and markdown outputs (in place)"
    import nbformat
    if nb.cells and nb.cells[0].cell_type == 'raw' and front_matter(nb): nb.cells.pop(0)
    cells = []
    for c in nb.cells:
        for k in [k for k in c if k not in ('cell_type', 'id', 'metadata', 'source', 'outputs', 'execution_count', 'attachments')]: del c[k]
        c.metadata = nbformat.NotebookNode(tags=[])
        if c.cell_type == 'markdown': c.source = fix_markdown(c.source, site, names)
        if c.cell_type != 'code': cells.append(c); continue
        opts, c.source = _cell_options(c.source)
        if opts.get('include') == 'false': continue
        if opts.get('echo') == 'false' or not c.source.strip(): c.metadata.tags.append('remove_input')
        if opts.get('output') == 'false': c.outputs = []
        for o in c.outputs:
            if o.get('output_type') == 'stream': o.text = _terminal(o.text if isinstance(o.text, str) else ''.join(o.text))
            md = o.get('data', {}).get('text/markdown')
            if md is not None: o.data['text/markdown'] = fix_markdown(md if isinstance(md, str) else ''.join(md), site, names)
        if c.outputs or 'remove_input' not in c.metadata.tags: cells.append(c)
    nb.cells = cells

_re_heading = re.compile(r'<h([1-6]) id="[^"]*">(.*?)(?:<a class="anchor-link" href="#[^"]*">(?:&#182;|¶)</a>)?</h\1>', re.S)

def _pandoc_anchors(body:str)->str:
    "Give every heading Pandoc's identifier (unique within the page, `-1`, `-2`, ... as Pandoc numbers repeats)"
    seen = {}
    def sub(m):
        base = pandoc_id(html.unescape(re.sub(r'<[^>]+>', '', m.group(2))))
        n = seen.get(base, -1) + 1; seen[base] = n
        hid = base if n == 0 else f'{base}-{n}'
        return f'<h{m.group(1)} id="{hid}">{m.group(2)}<a class="anchor-link" href="#{hid}">¶</a></h{m.group(1)}>'
    return _re_heading.sub(sub, body)

def _inline_md(s:str)->str:
    "Backticks and emphasis of a one-line description as HTML"
    s = html.escape(s, quote=False)
    s = re.sub(r'`([^`]+)`', r'<code>\1</code>', s)
    return re.sub(r'\*([^*]+)\*', r'<em>\1</em>', s)

def sidebar_entries(proc:Path)->list:
    "`sidebar.yml`'s contents as a list of notebook file names and (section title, [file names]) pairs"
    import yaml
    f = Path(proc)/'sidebar.yml'
    if not f.exists(): return []
    def walk(items):
        res = []
        for it in items or []:
            if isinstance(it, str): res.append(it)
            elif isinstance(it, dict) and 'section' in it: res.append((it['section'], walk(it.get('contents'))))
            elif isinstance(it, dict) and 'href' in it: res.append(it['href'])
        return res
    return walk((yaml.safe_load(f.read_text()) or {})['website']['sidebar']['contents'])

def _nav(entries, pages:dict, current:str)->str:
    "The sidebar's HTML"
    def item(e):
        if isinstance(e, tuple): return f'<li class="section"><span>{html.escape(e[0])}</span><ul>{"".join(item(x) for x in e[1])}</ul></li>'
        p = pages.get(Path(e).name)
        if p is None: return ''
        cls = ' class="active"' if p['out'] == current else ''
        return f'<li><a href="{p["out"]}"{cls}>{html.escape(p["title"])}</a></li>'
    return '<ul>' + ''.join(item(e) for e in entries) + '</ul>'

def _listed(entries)->set:
    return {Path(x).name for e in entries for x in (e[1] if isinstance(e, tuple) else [e]) if isinstance(x, str)}

CSS = """
body{margin:0;font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;font-size:16px;line-height:1.5;color:#212529}
#sidebar{position:fixed;top:0;left:0;bottom:0;width:250px;overflow-y:auto;padding:1rem;border-right:1px solid #dee2e6;background:#f8f9fa;box-sizing:border-box}
#sidebar .site-title{display:block;font-size:1.3rem;font-weight:600;color:#2780e3;text-decoration:none;margin-bottom:.8rem}
#sidebar ul{list-style:none;padding-left:0;margin:0}#sidebar ul ul{padding-left:.8rem}
#sidebar li{margin:.15rem 0}#sidebar li.section>span{display:block;margin-top:.6rem;font-weight:600;color:#6c757d;font-size:.85rem;text-transform:uppercase}
#sidebar a{color:#343a40;text-decoration:none;font-size:.95rem}#sidebar a.active{color:#2780e3;font-weight:600}#sidebar a:hover{color:#2780e3}
#content{margin-left:250px;padding:1.5rem 3rem;max-width:1000px}
#title-block-header{margin-bottom:1.5rem;border-bottom:1px solid #dee2e6}
#title-block-header h1.title{margin:.2rem 0 .5rem;font-size:2.2rem}
#title-block-header .description{color:#6c757d;font-size:1.15rem;margin:0 0 1rem}
a{color:#2780e3}code{font-family:SFMono-Regular,Menlo,Consolas,monospace;font-size:.875em;color:#7d12ba;background:#f8f9fa;padding:.1em .25em;border-radius:3px}
pre{margin:0;overflow-x:auto;font-size:.85rem;line-height:1.4}pre code{color:inherit;background:none;padding:0}
.highlight{background:#f8f9fa}
.cell{margin:.8rem 0}.input_area{border-left:3px solid #dee2e6;padding:.5rem .8rem;background:#f8f9fa}
.output_area{padding:.4rem .8rem;overflow-x:auto}.output_stream pre,.output_text pre{background:none}
.output_stderr{background:#fff5f5}.output_png img,.output_area img{max-width:100%}
.rendered_html table,.text_cell_render table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}
.rendered_html th,.rendered_html td{border:1px solid #dee2e6;padding:.3rem .6rem;vertical-align:top}
.rendered_html thead{background:#f1f3f5}.output_markdown td,.output_html td{white-space:nowrap}
.rendered_html img{max-width:100%}
.text_cell_render pre,.output_markdown pre{background:#f8f9fa;padding:.5rem .8rem;border-left:3px solid #dee2e6}
.anchor-link{visibility:hidden;margin-left:.3em;text-decoration:none;color:#adb5bd}h1:hover .anchor-link,h2:hover .anchor-link,h3:hover .anchor-link,h4:hover .anchor-link{visibility:visible}
blockquote{border-left:4px solid #dee2e6;margin:0;padding:0 1rem;color:#6c757d}
hr{border:0;border-top:1px solid #dee2e6}
"""

def render(proc='_proc', out='_site_offline'):
    "Render every processed notebook in `proc` to `out/<Quarto's name>.html`, with a sidebar; copy images and other files"
    from nbconvert import HTMLExporter
    from pygments.formatters import HtmlFormatter
    from traitlets.config import Config
    import nbformat
    proc, out = Path(proc), Path(out)
    if not proc.exists(): raise SystemExit(f"{proc} not found: run `nbdev-proc-nbs` first")
    out.mkdir(parents=True, exist_ok=True)
    for f in proc.rglob('*'):  # images and other files the pages use
        if f.is_file() and f.suffix != '.ipynb' and f.name not in SKIP_FILES and not any(p.startswith('.') for p in f.relative_to(proc).parts):
            (out/f.relative_to(proc)).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, out/f.relative_to(proc))
    site, nbs, pages = site_url(proc), {}, {}
    for p in sorted(proc.glob('*.ipynb')):
        nb = nbformat.read(p, as_version=4); fm = front_matter(nb)
        title = fm.get('title') or ('fastsparse' if p.stem == 'index' else p.stem)
        pages[p.name] = dict(out=fm.get('output-file') or out_name(p), title=title, description=fm.get('description', ''))
        nbs[p.name] = nb
    names = {k: v['out'] for k, v in pages.items()}
    entries = sidebar_entries(proc)
    extra = sorted(set(pages) - _listed(entries))  # pages the sidebar does not list go at its end
    if extra: entries = entries + [('Other pages', extra)]
    c = Config(); c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_input_tags = {'remove_input'}
    exp = HTMLExporter(config=c, template_name='basic')
    exp.exclude_input_prompt = exp.exclude_output_prompt = True
    css = CSS + HtmlFormatter(style='default').get_style_defs('.highlight')
    docs = {}
    for name, nb in nbs.items():
        pg = pages[name]
        _prepare(nb, site, names)
        body, _ = exp.from_notebook_node(nb)
        desc = f'<p class="description">{_inline_md(pg["description"])}</p>' if pg['description'] else ''
        docs[pg['out']] = (
            f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{html.escape(pg["title"])} – fastsparse</title><style>{css}</style></head>\n<body>'
            f'<nav id="sidebar"><a class="site-title" href="index.html">fastsparse</a>{_nav(entries, pages, pg["out"])}</nav>\n'
            f'<main id="content"><header id="title-block-header"><h1 class="title">{html.escape(pg["title"])}</h1>{desc}</header>\n'
            f'{_pandoc_anchors(body)}\n</main></body></html>\n')
    for page, doc in _drop_dead_anchors(docs).items(): (out/page).write_text(doc)
    return out

_re_local_href = re.compile(r'href="([\w.-]*\.html)?#([^"]+)"')

def _drop_dead_anchors(docs:dict)->dict:
    "Links to an anchor that its page does not have go to the page (as a browser does); each is reported"
    ids = {p: set(re.findall(r'\sid="([^"]+)"', d)) for p, d in docs.items()}
    dead = []
    def fix(page):
        def sub(m):
            target = m.group(1) or page
            if target not in ids or html.unescape(m.group(2)) in ids[target]: return m.group(0)
            dead.append(f'{page}: {target}#{m.group(2)}')
            return f'href="{target}"'
        return sub
    res = {p: _re_local_href.sub(fix(p), d) for p, d in docs.items()}
    if dead: print(f"{len(dead)} links name an anchor their page lacks (nbdev links private names, which show_doc leaves out); they point at the page:\n  " + '\n  '.join(dead))
    return res

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--proc', default='_proc'); p.add_argument('--out', default='_site_offline')
    a = p.parse_args()
    print(f"wrote {render(a.proc, a.out)}/index.html")
