"""Offline docs preview: render the notebooks processed by `nbdev-proc-nbs` (in `_proc/`) to static HTML with nbconvert.

Quarto (what `nbdev-docs` uses) cannot always be installed; this gives a browsable copy of the same pages:

    nbdev-proc-nbs && python tools/docs_preview.py      # then open _site_offline/index.html
"""
import argparse, json, re, shutil
from pathlib import Path

def render(proc='_proc', out='_site_offline'):
    "Render every processed notebook in `proc` to `out/<name>.html`, plus an `index.html` linking them"
    from nbconvert import HTMLExporter
    import nbformat
    proc, out = Path(proc), Path(out)
    if not proc.exists(): raise SystemExit(f"{proc} not found: run `nbdev-proc-nbs` first")
    out.mkdir(parents=True, exist_ok=True)
    exp = HTMLExporter(template_name='classic')
    exp.exclude_input_prompt = exp.exclude_output_prompt = True
    pages = []
    for nb_path in sorted(proc.glob('*.ipynb')):
        nb = nbformat.read(nb_path, as_version=4)
        for c in nb.cells:  # hide the code of show_doc/hidden cells, as the site does; drop nbdev's private cell keys
            for k in [k for k in c if k not in ('cell_type', 'id', 'metadata', 'source', 'outputs', 'execution_count', 'attachments')]: del c[k]
            c.metadata = nbformat.NotebookNode()
            src = c.source if isinstance(c.source, str) else ''.join(c.source)
            if c.cell_type == 'code' and ('show_doc(' in src or '#| echo: false' in src or '#| hide' in src): c.metadata['jupyter'] = {'source_hidden': True}; c.source = ''
        html, _ = exp.from_notebook_node(nb)
        title = next((re.sub(r'^#\s*', '', l) for c in nb.cells if c.cell_type == 'markdown' for l in (c.source if isinstance(c.source, str) else ''.join(c.source)).splitlines() if l.startswith('# ')), nb_path.stem)
        name = 'home' if nb_path.stem == 'index' else nb_path.stem
        (out/f'{name}.html').write_text(html)
        pages.append((name, title))
    links = '\n'.join(f'<li><a href="{n}.html">{t}</a></li>' for n, t in pages)
    (out/'index.html').write_text(f'<!doctype html><html><head><meta charset="utf-8"><title>fastsparse docs (offline preview)</title></head>'
                                  f'<body><h1>fastsparse documentation (offline preview)</h1><ul>{links}</ul></body></html>')
    return out

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--proc', default='_proc'); p.add_argument('--out', default='_site_offline')
    a = p.parse_args()
    print(f"wrote {render(a.proc, a.out)}/index.html")
