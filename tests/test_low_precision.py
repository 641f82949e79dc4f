"The masked path in bfloat16/float16: under CPU autocast and as low-precision models, through the PyTorch wrapper (SET, RigL) and a GradScaler"
import copy, warnings
import pytest, torch
from torch import nn
from fastsparse.core import sparsify_model, weights_and_masks
from fastsparse.engine import DropGrowEngine, weight_magnitude, gradient_magnitude
from fastsparse.wrapper import DynamicSparseTrainingOptimizerWrapper
from fastsparse.schedule import SET_presets, RigL_presets
from fastsparse.sparse_linear import TrulySparseLinear, update_truly_sparse_layer

warnings.filterwarnings('ignore', message='Sparse CSR tensor support is in beta state')

def _net(): return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, 5))

@pytest.mark.parametrize('dt,ac', [(torch.bfloat16, None), (torch.float16, None), (None, torch.bfloat16), (None, torch.float16)])
@pytest.mark.parametrize('method', ['set', 'rigl'])
def test_masked_wrapper_low_precision(dt, ac, method):
    "A masked conv+linear model as a bf16/fp16 model or under CPU autocast: outputs in the expected dtype, masked weights exactly 0 after every step, budgets exact, masks move, weights finite"
    torch.manual_seed(0)
    m = _net(); sparsify_model(m, 0.9)
    if dt is not None: m = m.to(dt)
    so = DynamicSparseTrainingOptimizerWrapper(m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), batches_per_update=3, total_steps=24, seed=0,
                                               **(SET_presets if method == 'set' else RigL_presets))
    b0, (ws, ms) = so.engine.budgets(), weights_and_masks(m)
    m0, g = [k.clone() for k in ms], torch.Generator().manual_seed(0)
    for t in range(24):
        x, y = torch.randn(16, 3, 8, 8, generator=g).to(dt or torch.float32), torch.randint(0, 5, (16,), generator=g)
        with torch.autocast('cpu', dtype=ac or torch.bfloat16, enabled=ac is not None): out = m(x)
        assert out.dtype == (ac or dt)
        nn.functional.cross_entropy(out.float(), y).backward(); so.step(); so.zero_grad()
        assert so.engine.budgets() == b0
        for w, k in zip(ws, ms): assert w.dtype == (dt or torch.float32) and bool((w[~k] == 0).all())
    assert so.n_updates == 5 and all(not torch.equal(a, b) for a, b in zip(m0, ms))
    assert all(w.isfinite().all() for w in ws)

def _distinct(shape, gen):
    "Weights whose magnitudes are distinct multiples of 1/128 (exact in bfloat16), random signs"
    n = shape[0] * shape[1]
    v = (torch.randperm(n, generator=gen) + 1).float() / 128
    return (v * (torch.randint(0, 2, (n,), generator=gen) * 2 - 1)).view(shape)

@pytest.mark.parametrize('dt', [torch.bfloat16, torch.float16])
def test_low_precision_scores_select_exactly(dt):
    "Drop and grow on a low-precision layer (masked and truly sparse) pick exactly the k smallest |w| and the k largest |grad|, as ranked in float64"
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(16, 12, bias=False)
    sparsify_model(lin, 0.5)
    lin = lin.to(dt)
    w, mask = _distinct((12, 16), g), lin.weight_mask.clone()
    with torch.no_grad(): lin.weight.copy_(w * mask)
    lin.weight.grad = _distinct((12, 16), g).to(dt)
    k = round(0.3 * int(mask.sum()))
    keep = w.abs().double().flatten().masked_fill(~mask.flatten(), float('inf'))
    want_drop = set(keep.topk(k, largest=False).indices.tolist())
    gr = lin.weight.grad.abs().double().flatten().masked_fill(mask.flatten(), -1.)
    want_grow = set(gr.topk(k).indices.tolist())
    ts = TrulySparseLinear.from_dense(lin.weight, mask)
    res = DropGrowEngine(lin, weight_magnitude, gradient_magnitude, seed=0).update(0.3)
    assert res['dropped'] == [k]
    new = lin.weight_mask.flatten()
    assert set((mask.flatten() & ~new).nonzero().squeeze(1).tolist()) == want_drop
    assert set((new & ~mask.flatten()).nonzero().squeeze(1).tolist()) == want_grow
    assert ts.values.dtype == dt
    dropped, _ = update_truly_sparse_layer(ts, k, k, 'random', None, torch.Generator().manual_seed(0))
    assert set(dropped.tolist()) == want_drop and ts.values.dtype == dt

def test_masked_autocast_fp16_grad_scaler():
    "CPU GradScaler with float16 autocast through the wrapper (RigL): an overflow step is skipped (not counted, masks unchanged), masked weights stay 0"
    torch.manual_seed(0)
    m = _net(); sparsify_model(m, 0.9)
    so = DynamicSparseTrainingOptimizerWrapper(m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), batches_per_update=3, total_steps=16, seed=0, **RigL_presets)
    scaler, (ws, ms), g = torch.amp.GradScaler('cpu', init_scale=2.**10), weights_and_masks(m), torch.Generator().manual_seed(0)
    b0 = so.engine.budgets()
    for t in range(17):
        x, y = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 5, (16,), generator=g)
        with torch.autocast('cpu', dtype=torch.float16): loss = nn.functional.cross_entropy(m(x), y)
        if t == 6: loss = loss * float('inf')
        n0, m0 = so.n_step, [k.clone() for k in ms]
        scaler.scale(loss).backward(); scaler.step(so); scaler.update(); so.zero_grad()
        if t == 6: assert so.n_step == n0 and all(torch.equal(a, b) for a, b in zip(m0, ms))
        assert so.engine.budgets() == b0 and all(bool((w[~k] == 0).all()) for w, k in zip(ws, ms))
    assert so.n_step == 16 and so.n_updates == 3 and all(w.isfinite().all() for w in ws)
