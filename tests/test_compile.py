"torch.compile: no graph breaks from fastsparse, no recompiles on topology updates, same results as eager"
from functools import partial
import pytest, torch
import torch._dynamo
from torch import nn
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import SGD
from fastsparse import *
from fastsparse.data import digits_dls

def _mlp(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    sparsify_model(m, 0.9, sparse_f=erdos_renyi_sparsity, generator=torch.Generator().manual_seed(seed))
    return m

@pytest.mark.parametrize('enforce', [True, 'forward'])
def test_no_graph_breaks(enforce):
    torch._dynamo.reset()
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    sparsify_model(m, 0.9, enforce_masks=enforce)
    ex = torch._dynamo.explain(m)(torch.randn(8, 64))
    assert ex.graph_break_count == 0 and ex.graph_count == 1

def _train(model, steps=40, compiled=False):
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x = torch.tensor((x - x.mean()) / x.std(), dtype=torch.float32); y = torch.tensor(y)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    so = DynamicSparseTrainingOptimizerWrapper(model, opt, batches_per_update=5, total_steps=steps, seed=0, **RigL_presets)
    fwd = torch.compile(model) if compiled else model
    g, losses = torch.Generator().manual_seed(0), []
    for t in range(steps):
        i = torch.randint(len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(fwd(x[i]), y[i]); loss.backward(); so.step(); so.zero_grad()
        losses.append(loss.item())
        if t == 1 and compiled: torch._dynamo.config.error_on_recompile = True  # from here on, a recompile raises
    return losses, so

def test_compiled_matches_eager_and_never_recompiles():
    torch._dynamo.reset()
    try:
        eager_losses, so_e = _train(_mlp())
        comp_model = _mlp()
        comp_losses, so_c = _train(comp_model, compiled=True)
    finally: torch._dynamo.config.error_on_recompile = False
    assert so_c.n_updates == so_e.n_updates > 3
    torch.testing.assert_close(torch.tensor(comp_losses), torch.tensor(eager_losses), rtol=1e-4, atol=1e-4)
    eager_masks = [m for m in weights_and_masks(so_e.model)[1]]
    for a, b in zip(eager_masks, weights_and_masks(comp_model)[1]): assert torch.equal(a, b)
    for w, m in zip(*weights_and_masks(comp_model)): assert not (w[~m] != 0).any()

def test_fastai_compiled_model_with_callback():
    torch._dynamo.reset()
    torch.manual_seed(0)
    learn = Learner(digits_dls(bs=64, seed=0), nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
                    loss_func=CrossEntropyLossFlat(), opt_func=partial(SGD, mom=0.9))
    sparsify_model(learn, 0.9)
    learn.model = torch.compile(learn.model, backend='aot_eager')
    dst = DynamicSparseTrainingCallback(**RigL_presets, batches_per_update=4, seed=0)
    mon = DensityMonitor()
    with learn.no_bar(), learn.no_logging(): learn.fit(2, 0.05, cbs=[dst, mon])
    assert dst.n_updates > 0 and dst.engine.model is learn.model._orig_mod
    assert abs(mon.mean_density - 0.1) < 1e-3
    for w, m in zip(*weights_and_masks(learn.model)): assert not (w[~m] != 0).any()

def _forward_masked():
    "A fresh small MLP sparsified with `enforce_masks='forward'` (dynamo reset)"
    torch._dynamo.reset()
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    sparsify_model(m, 0.8, enforce_masks='forward')
    return m

def test_forward_mode_masks_inside_compiled_graph():
    "enforce_masks='forward' under torch.compile: a hand-written update is masked by the compiled forward itself"
    m = _forward_masked()
    cm = torch.compile(m)
    cm(torch.randn(4, 16))
    with torch.no_grad(): m[0].weight.add_(1.)  # bypasses every optimizer hook
    out = cm(torch.randn(4, 16)); out.sum().backward()
    assert not (m[0].weight[~m[0].weight_mask] != 0).any() and m[0].weight.grad is not None

def test_forward_mode_zeroes_nonfinite_inside_compiled_graph():
    "The bit-view masking traced into a compiled forward turns NaN/inf at masked positions into exact zeros (no graph break)"
    m = _forward_masked()
    ex = torch._dynamo.explain(m)(torch.randn(4, 16))
    assert ex.graph_break_count == 0
    cm = torch.compile(m)
    cm(torch.randn(4, 16))
    with torch.no_grad(): m[0].weight[~m[0].weight_mask] = float('nan'); m[2].weight[~m[2].weight_mask] = float('inf')
    assert cm(torch.randn(4, 16)).isfinite().all()
    for w, k in zip(*weights_and_masks(m)): assert (w[~k] == 0).all()
