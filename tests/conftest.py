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
