import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
FMNIST = Path(os.environ.get('FASHION_MNIST_PATH', '/usr/share/datasets/fashion-mnist'))

@pytest.fixture(scope='session')
def fmnist_folder(tmp_path_factory):
    "A small Fashion-MNIST image folder (train/valid, 10 classes), written once per test session"
    from fastsparse.data import write_image_folder
    return write_image_folder(tmp_path_factory.mktemp('fmnist_imgs'), n_per_class=12)

@pytest.fixture(scope='session')
def docs_site(tmp_path_factory):
    "The docs as a user without Fashion-MNIST builds them: a fresh `nbdev-proc-nbs` with FASHION_MNIST_PATH at an empty folder, then the offline preview"
    import shutil, subprocess
    if os.environ.get('FASTSPARSE_DOCS_SITE'): return Path(os.environ['FASTSPARSE_DOCS_SITE'])  # a preview already built (iterating on the docs tests)
    empty = tmp_path_factory.mktemp('no_fashion_mnist')
    shutil.rmtree(ROOT/'_proc', ignore_errors=True)  # no cached page from a build that had the data set
    env = {**os.environ, 'FASHION_MNIST_PATH': str(empty)}
    r = subprocess.run(['nbdev-proc-nbs'], cwd=ROOT, capture_output=True, text=True, timeout=1800, env=env)
    assert r.returncode == 0, f"nbdev-proc-nbs failed without Fashion-MNIST:\n{r.stderr[-5000:]}"
    out = tmp_path_factory.mktemp('site')
    r = subprocess.run([sys.executable, 'tools/docs_preview.py', '--out', str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return out
