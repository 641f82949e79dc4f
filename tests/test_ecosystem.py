"Masks that survive the ecosystem: channels_last, deepcopy/pickle mid-training, weights_only checkpoints, sparsify before DDP"
import copy, io, pickle
from functools import partial
import torch
from torch import nn
from fastsparse import *

def _convnet(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    sparsify_model(m, 0.8, generator=torch.Generator().manual_seed(seed))
    return m

def _steps(model, so, n, fmt=torch.contiguous_format, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(8, 3, 12, 12, generator=g).to(memory_format=fmt); y = torch.randint(0, 10, (8,), generator=g)
        nn.functional.cross_entropy(model(x), y).backward(); so.step(); so.zero_grad()

def test_channels_last_rigl_matches_contiguous():
    res = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        m = _convnet().to(memory_format=fmt)
        if fmt == torch.channels_last: assert m[0].weight.is_contiguous(memory_format=torch.channels_last)
        so = DynamicSparseTrainingOptimizerWrapper(m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9),
                                                   batches_per_update=3, total_steps=20, seed=0, **RigL_presets)
        b0 = so.engine.budgets()
        _steps(m, so, 20, fmt)
        assert so.n_updates > 0 and so.engine.budgets() == b0
        for w, k in zip(*weights_and_masks(m)): assert not (w[~k] != 0).any()
        res.append([k.clone().contiguous() for k in weights_and_masks(m)[1]])
    for a, b in zip(*res): assert torch.equal(a, b)  # same topology whatever the memory format

def test_deepcopy_and_pickle_mid_training_keep_enforcing():
    m = _convnet()
    so = DynamicSparseTrainingOptimizerWrapper(m, torch.optim.Adam(m.parameters(), lr=0.01), batches_per_update=3, total_steps=30, seed=0)
    _steps(m, so, 10)
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        for (k, a), b in zip(m.state_dict().items(), clone.state_dict().values()): assert torch.equal(a, b), k
        so2 = DynamicSparseTrainingOptimizerWrapper(clone, torch.optim.Adam(clone.parameters(), lr=0.5, weight_decay=0.1),
                                                    batches_per_update=3, total_steps=30, seed=0)
        _steps(clone, so2, 6, seed=1)
        for w, k in zip(*weights_and_masks(clone)): assert not (w[~k] != 0).any()

def test_every_checkpoint_loads_with_weights_only():
    m = _convnet()
    so = DynamicSparseTrainingOptimizerWrapper(m, torch.optim.AdamW(m.parameters(), lr=0.01), batches_per_update=3, total_steps=30, seed=0, **SET_presets)
    _steps(m, so, 7)
    for obj in (m.state_dict(), so.state_dict()):
        buf = io.BytesIO(); torch.save(obj, buf); buf.seek(0)
        torch.load(buf, weights_only=True)
