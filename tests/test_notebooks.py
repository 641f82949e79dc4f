"Run every notebook's tests (nbdev), including cells flagged `slow`; `cuda` cells run when a GPU is present"
import subprocess, sys
from pathlib import Path
import pytest, torch

NBS = sorted((Path(__file__).resolve().parents[1]/'nbs').glob('[!_]*.ipynb'))
FLAGS = ['slow'] + (['cuda'] if torch.cuda.is_available() else [])

@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook(nb):
    # each notebook in a fresh interpreter: a notebook re-runs its module's cells (patching `Learner`, wrapping fastai's
    # optimizer steps with its own copy of core), which must not leak into other tests of this pytest process
    code = (f"from nbdev import test\nok, secs = test.test_nb({str(nb)!r}, skip_flags=['slow', 'cuda'], force_flags={FLAGS!r})\n"
            "raise SystemExit(0 if ok else 1)")
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, f"{nb.name} failed:\n{res.stdout[-5000:]}\n{res.stderr[-10000:]}"
