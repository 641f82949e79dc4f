"""Write README.md's text into nbs/index.ipynb (the docs' home page), one markdown cell per `## ` section.

nbdev renders README.md from index.ipynb with Quarto, which is not always installable; this keeps the two equal
without it (tests/test_readme.py checks that they are):

    python tools/sync_index.py && nbdev-clean
"""
import json, re, secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def sections(text:str)->list[str]:
    "`text` split before every `## ` heading that is not inside a code block"
    out, cur, fence = [], [], False
    for line in text.strip().split('\n'):
        if line.startswith('```'): fence = not fence
        if line.startswith('## ') and not fence and cur: out.append('\n'.join(cur).strip()); cur = []
        cur.append(line)
    return out + ['\n'.join(cur).strip()]

def sync(readme=ROOT/'README.md', index=ROOT/'nbs'/'index.ipynb'):
    "Replace the cells of `index` by the sections of `readme`, keeping the ids of cells whose first line is unchanged"
    nb = json.loads(index.read_text()) if index.exists() else dict(metadata={"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}, nbformat=4, nbformat_minor=5)
    ids = {''.join(c['source']).split('\n')[0]: c.get('id') for c in nb.get('cells', [])}
    nb['cells'] = [dict(cell_type='markdown', id=ids.get(s.split('\n')[0]) or secrets.token_hex(4), metadata={},
                        source=s.splitlines(keepends=True)) for s in sections(readme.read_text())]
    index.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return index

if __name__ == '__main__': print(f"wrote {sync()}")
