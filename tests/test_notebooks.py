"Run every notebook's tests (nbdev), including cells flagged `slow`; `cuda` cells run when a GPU is present"
from pathlib import Path
import pytest, torch
from nbdev import test as nbdev_test

NBS = sorted((Path(__file__).resolve().parents[1]/'nbs').glob('[!_]*.ipynb'))
FLAGS = ['slow'] + (['cuda'] if torch.cuda.is_available() else [])

@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook(nb):
    ok, secs = nbdev_test.test_nb(nb, skip_flags=['slow', 'cuda'], force_flags=FLAGS)
    assert ok, f"{nb.name} failed (traceback above)"
