"fastsparse: dynamic sparse training (SET, SNFS, RigL) for PyTorch, with a fastai adapter loaded on first use"
__version__ = "0.1.0"

# The torch-only layer: imported now, needs nothing but PyTorch
from . import core as _core
globals().update({n: getattr(_core, n) for n in _core.__all__ if n not in _core._moved})  # core's own names; its moved ones come from their new homes
from .engine import *
from .schedule import *
from .wrapper import *
from .report import *
from .export import *
from .sparse_linear import *
from .sharded import *
from . import engine as _engine, schedule as _schedule, wrapper as _wrapper, report as _report, export as _export, sparse_linear as _sparse_linear, sharded as _sharded

# The fastai adapter: imported (with fastai) the first time one of its names is used
_adapter = {
    'fastsparse.callbacks': ['DynamicSparseTrainingCallback', 'DensityMonitor'],
    'fastsparse.diagnostics': ['SparsityRecorder'],
    'fastsparse.data': ['fashion_mnist_path', 'fashion_mnist_classes', 'read_idx', 'fashion_mnist', 'ArrayDataset', 'TensorDL', 'tensor_dls',
                        'digits_dls', 'fashion_mnist_dls', 'write_image_folder'],
}
_lazy = {n: m for m, ns in _adapter.items() for n in ns}

def __getattr__(name:str):
    "Load the fastai adapter module that defines `name` on first use"
    mod = _lazy.get(name)
    if mod is None: raise AttributeError(f"module 'fastsparse' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(mod), name)

def __dir__(): return sorted(set(globals()) | set(_lazy))

__all__ = list(dict.fromkeys([n for m in (_core, _engine, _schedule, _wrapper, _report, _export, _sparse_linear, _sharded) for n in m.__all__ if n not in _lazy] + list(_lazy)))
