"""Run notebooks as their tests do (`nbdev.test.test_nb`, `slow` cells included) and save the outputs into them.

For pages whose outputs are saved rather than computed when the docs are built (Get started: it trains on
Fashion-MNIST for minutes). Console progress bars are resolved as a terminal shows them (each carriage return
overwrites the line), so the saved text holds fastai's table, not every bar update. Then `nbdev-clean`:

    python tools/save_outputs.py nbs/00a_get_started.ipynb && nbdev-clean
"""
import argparse, json, sys
from pathlib import Path

def terminal_text(text:str)->str:
    "`text` as a terminal leaves it: a carriage return goes back to the line's start and overwrites; trailing spaces go"
    out = []
    for line in text.split('\n'):
        cur = ''
        for seg in line.split('\r'): cur = seg + cur[len(seg):]
        out.append(cur.rstrip())
    return '\n'.join(out)

def clean_streams(nb_path):
    "Resolve carriage returns in every stream output saved in the notebook at `nb_path`; drop streams left empty"
    p = Path(nb_path); nb = json.loads(p.read_text())
    for c in nb['cells']:
        outs = []
        for o in c.get('outputs', []):
            if o.get('output_type') == 'stream':
                t = terminal_text(''.join(o['text'])).strip('\n')
                if not t: continue
                o['text'] = (t + '\n').splitlines(keepends=True)
            outs.append(o)
        if 'outputs' in c: c['outputs'] = outs
    p.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')

def save_outputs(nb_path)->bool:
    "Run the notebook at `nb_path` (as `tests/test_notebooks.py` does) and, if it passes, save its outputs"
    from nbdev.test import test_nb
    nb_path = Path(nb_path).resolve()  # test_nb runs in the notebook's folder and saves from there
    ok, secs = test_nb(str(nb_path), skip_flags=['slow', 'cuda'], force_flags=['slow'], save=True)
    if ok: clean_streams(nb_path)
    print(f"{nb_path}: {'saved' if ok else 'FAILED, nothing saved'} ({secs:.0f} s)")
    return ok

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='+')
    sys.exit(0 if all([save_outputs(n) for n in p.parse_args().notebooks]) else 1)
