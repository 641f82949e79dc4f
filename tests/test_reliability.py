"Issue 16: the budget and the zeros hold under inputs users produce (Lookahead, unused layers, low sparsity, non-finite values, odd layers)"
import math
from functools import partial
import pytest, torch
from torch import nn
from hypothesis import given, settings, strategies as st, HealthCheck
from fastai.learner import Learner
from fastai.callback.core import Callback
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import SGD, Adam, RAdam, Lookahead, ranger
from fastsparse import *
from fastsparse.engine import _param_states
from fastsparse.data import digits_dls

cfg = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def mlp(): return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
def nonzero(model): return sum(int((w != 0).sum()) for w in weights_and_masks(model)[0])

class ZerosProbe(Callback):
    "Masked weights are exactly 0 at every forward and after every step; layer budgets exact"
    order = 30
    def before_fit(self): self.budgets, self.n = [int(m.sum()) for m in weights_and_masks(self.learn.model)[1]], 0
    def _check(self):
        ws, ms = weights_and_masks(self.learn.model)
        for w, m in zip(ws, ms): assert not (w[~m] != 0).any()
        assert [int(m.sum()) for m in ms] == self.budgets
        self.n += 1
    def before_batch(self): self._check()
    def after_step(self): self._check()

# 1. Lookahead (ranger) copies its slow weights back after the inner step
@pytest.mark.parametrize('method', ['set', 'rigl'])
@pytest.mark.parametrize('opt', ['ranger', 'lookahead_sgd'])
def test_lookahead_keeps_zeros_and_budgets(method, opt):
    opt_func = ranger if opt == 'ranger' else lambda ps, lr: Lookahead(SGD(ps, lr, mom=0.9), k=2)
    torch.manual_seed(0)
    learn = Learner(digits_dls(bs=64, seed=0), mlp(), loss_func=CrossEntropyLossFlat(), opt_func=opt_func)
    learn.sparsify(0.9, method=method, batches_per_update=5, seed=0)
    budget = sum(int(m.sum()) for m in weights_and_masks(learn.model)[1])
    probe = ZerosProbe()
    with learn.no_bar(), learn.no_logging(): learn.fit(2, 1e-2, cbs=probe)
    dst = next(cb for cb in learn.cbs if isinstance(cb, DynamicSparseTrainingCallback))
    assert probe.n > 20 and dst.n_updates > 3
    assert nonzero(learn.model) <= budget
    slow = {id(p): s for pl, sl in zip(learn.opt.param_lists, learn.opt.slow_weights) for p, s in zip(pl, sl)}
    for w, m in zip(*weights_and_masks(learn.model)):
        assert not (slow[id(w)][~m] != 0).any()  # slow weights too: nothing can come back at the next Lookahead copy

def test_engine_zeroes_slow_weights_at_dropped_and_grown():
    torch.manual_seed(0)
    model = mlp(); sparsify_model(model, 0.8)
    opt = Lookahead(RAdam(list(model.parameters()), lr=1e-2), k=2)
    for _ in range(4): model(torch.randn(8, 64)).pow(2).mean().backward(); opt.step()
    model(torch.randn(8, 64)).pow(2).mean().backward()
    before = [m.clone() for m in weights_and_masks(model)[1]]
    DropGrowEngine(model, grow_score_f=random_score, seed=0).update(0.5, opt)
    for (w, m), b in zip(zip(*weights_and_masks(model)), before):
        changed = m ^ b
        assert changed.any()
        sts = _param_states(opt, w)
        assert len(sts) >= 3  # RAdam's grad_avg, sqr_avg and Lookahead's slow weight
        for s in sts: assert not (s[changed] != 0).any()

def test_step_hooks_wrap_lookahead_and_go_away():
    from fastsparse.core import _step_hooks, _enforcers
    m = mlp(); h = sparsify_model(m, 0.9)
    from fastsparse.core import _after_opt_step
    assert _after_opt_step in getattr(Lookahead.step, '_fastsparse_hooks', [])
    h.remove()
    if not _enforcers: assert _after_opt_step not in getattr(Lookahead.step, '_fastsparse_hooks', []) and 'fastai' not in _step_hooks

# 3. a masked layer the forward never uses
class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.unused, self.b = nn.Linear(64, 32), nn.Linear(64, 32), nn.Linear(32, 10)
    def forward(self, x): return self.b(self.a(x).relu())

@pytest.mark.parametrize('method', ['set', 'snfs', 'rigl', 'custom'])
def test_unused_layer_is_skipped(method):
    torch.manual_seed(0)
    model = Branchy(); sparsify_model(model, 0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    kw = dict(set=SET_presets, snfs=SNFS_presets, rigl=RigL_presets,
              custom=dict(grow_score_f=lambda p, o: p.grad.abs(), keep_score_f=lambda p, o: p.abs()))[method]
    kw = {k: v for k, v in kw.items() if k in ('keep_score_f', 'grow_score_f', 'redistribute_f')}
    eng = DropGrowEngine(model, seed=0, **kw)
    b0, m_unused = eng.budgets(), model.unused.weight_mask.clone()
    for _ in range(3):
        model(torch.randn(16, 64)).pow(2).mean().backward(); opt.step()
        res = eng.update(0.3, opt); opt.zero_grad()
        assert res['dropped'][1] == res['grown'][1] == 0
    if method == 'snfs': assert sum(eng.budgets()) == sum(b0)
    else: assert eng.budgets() == b0
    assert torch.equal(model.unused.weight_mask, m_unused)

# 4. SNFS at low sparsity: the layers together have less room than the drops
@cfg
@given(st.sampled_from([0.02, 0.1, 0.2, 0.3]), st.floats(0.1, 1.0), st.booleans(), st.integers(0, 100))
def test_snfs_low_sparsity_total_exact(s, frac, allow_regrow, seed):
    torch.manual_seed(seed)
    model = mlp(); sparsify_model(model, s, sparse_f=erdos_renyi_sparsity)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    eng = DropGrowEngine(model, grow_score_f=gradient_momentum, redistribute_f=momentum_redistribution, allow_regrow=allow_regrow, seed=seed)
    total = sum(eng.budgets())
    for _ in range(3):
        model(torch.randn(16, 64)).pow(2).mean().backward(); opt.step()
        res = eng.update(frac, opt); opt.zero_grad()
        assert sum(eng.budgets()) == total and sum(res['dropped']) == sum(res['grown'])
        for w, m in zip(eng.weights, eng.masks): assert not (w[~m] != 0).any()

def test_snfs_fit_at_low_sparsity():
    "SNFS with momentum-driven regrowth trains at 10 % sparsity with the model total exact (stopped at the end of epoch 1 before)"
    torch.manual_seed(0)
    learn = Learner(digits_dls(bs=64, seed=0), mlp(), loss_func=CrossEntropyLossFlat(), opt_func=partial(SGD, mom=0.9))
    learn.sparsify(0.1, method='snfs', seed=0)
    total = sum(int(m.sum()) for m in weights_and_masks(learn.model)[1])
    with learn.no_bar(), learn.no_logging(): learn.fit(3, 0.05)
    dst = next(cb for cb in learn.cbs if isinstance(cb, DynamicSparseTrainingCallback))
    assert dst.n_updates >= 2 and sum(int(m.sum()) for m in weights_and_masks(learn.model)[1]) == total

# 5. parametrized weights
def test_parametrized_weights_refused_and_reported_truthfully():
    from torch.nn.utils.parametrizations import weight_norm, spectral_norm
    for p in (weight_norm, spectral_norm):
        m = nn.Sequential(p(nn.Linear(100, 100)), nn.Linear(100, 110))
        with pytest.raises(ValueError, match=r"\['0.weight'\].*parametriz"): sparsify_model(m, 0.9)
        assert not masked_params(m)
    m = nn.Sequential(nn.Linear(100, 100), nn.Linear(100, 110)); sparsify_model(m, 0.9)
    weight_norm(m[1])  # parametrized after sparsifying: fastsparse no longer masks it
    with torch.no_grad(): m[1].parametrizations.weight.original1.add_(1.)
    rows = sparse_report(m)
    assert [r['layer'] for r in rows] == ['0.weight', '1.weight']
    assert rows[1]['active'] == int((m[1].weight != 0).sum()) == 11_000  # the real count, not the stale mask's

# 7, 9. selection under non-finite weights and scores (property tests of `_select` are in test_select_props.py)
@pytest.mark.parametrize('grow', ['rigl', 'set'])
def test_diverged_weights_keep_budgets(grow):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 600), nn.ReLU(), nn.Linear(600, 10)); sparsify_model(model, 0.9)  # 38,400 weights: bracketed path
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    eng = DropGrowEngine(model, grow_score_f=gradient_magnitude if grow == 'rigl' else random_score, seed=0)
    b0 = eng.budgets()
    for i in range(4):
        model(torch.randn(8, 64)).pow(2).mean().backward(); opt.step()
        with torch.no_grad():
            for w, m in zip(eng.weights, eng.masks):
                act = torch.nonzero(m.reshape(-1)).squeeze(1)
                w.view(-1)[act[:len(act) // 3]] = float('nan'); w.view(-1)[act[-5:]] = float('inf') * (-1) ** i
                w.grad.view(-1)[:w.numel() // 4] = float('nan')
        eng.update(0.3, opt); opt.zero_grad()
        assert eng.budgets() == b0
        for w, m in zip(eng.weights, eng.masks): assert not (w[~m] != 0).any() and not w[~m].isnan().any()

@pytest.mark.parametrize('n_out', [20, 600])  # under and over 32,768 weights
def test_custom_inf_scores_exact(n_out):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, n_out)); sparsify_model(model, 0.9)
    m0 = model[0].weight_mask.clone()
    allowed_grow = torch.zeros_like(m0); allowed_grow.view(-1)[torch.randperm(m0.numel())[:5]] = True
    def grow_f(p, o): return torch.where(allowed_grow, torch.rand_like(p), torch.full_like(p, float('-inf')))  # -inf: "never grow here"
    def keep_f(p, o): return torch.where(p.abs() > 0.05, torch.full_like(p, float('inf')), p.abs())  # +inf: "never drop"
    eng = DropGrowEngine(model, keep_score_f=keep_f, grow_score_f=grow_f, seed=0)
    b = eng.budgets()[0]
    res = eng.update(0.3, None)
    m = model[0].weight_mask
    assert int(m.sum()) == b and res['grown'][0] == round(0.3 * b)
    grown = m & ~m0
    assert int(grown.sum()) == res['grown'][0] and not (grown & m0).any()  # exactly k, all among the inactive
    assert bool(grown[allowed_grow & ~m0].all())  # the finite-scored ones first

# 8. non-finite values at masked positions
def test_nonfinite_at_masked_positions_become_zero():
    torch.manual_seed(0)
    model = mlp(); sparsify_model(model, 0.9)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for k in ('0.weight', '2.weight'): sd[k][~sd[k.replace('weight', 'weight_mask')]] = float('nan')
    model.load_state_dict(sd)
    for w, m in zip(*weights_and_masks(model)): assert (w[~m] == 0).all() and not torch.signbit(w[~m]).any()
    assert model(torch.randn(4, 64)).isfinite().all()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 64)).sum().backward()
    with torch.no_grad(): model[0].weight.grad[~model[0].weight_mask] = float('inf')  # an inf gradient at masked positions
    opt.step()
    for w, m in zip(*weights_and_masks(model)): assert (w[~m] == 0).all()
    assert model(torch.randn(4, 64)).isfinite().all()
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        mm = nn.Linear(8, 8).to(dt); sparsify_model(mm, 0.5)
        with torch.no_grad(): mm.weight.fill_(float('nan'))
        apply_masks(mm)
        assert (mm.weight[~mm.weight_mask] == 0).all() and mm.weight[mm.weight_mask].isnan().all()

# 10. SNFS with non-finite momentum
def test_snfs_nonfinite_momentum():
    torch.manual_seed(0)
    model = mlp(); sparsify_model(model, 0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(16, 64)).pow(2).mean().backward(); opt.step()
    eng = DropGrowEngine(model, grow_score_f=gradient_momentum, redistribute_f=momentum_redistribution, seed=0)
    total = sum(eng.budgets())
    buf, mask = opt.state[model[2].weight]['momentum_buffer'], model[2].weight_mask
    buf[~mask] = float('inf')  # masked positions do not count towards the share: an exact, finite redistribution
    eng.update(0.3, opt); assert sum(eng.budgets()) == total
    for bad in (float('inf'), float('nan')):
        buf[model[2].weight_mask] = bad
        with pytest.raises(FloatingPointError, match=r"momentum.*\['2.weight'\]|\['2.weight'\].*momentum"): eng.update(0.3, opt)
        assert sum(eng.budgets()) == total

# 12, 13, 14. distributions and layers
def test_erk_dense_layers_stay_dense_or_clear_error():
    shapes = [(2, 5), (5, 2), (6, 4), (5, 8), (2, 7)]
    ps = [torch.empty(s) for s in shapes]
    with pytest.raises(ValueError, match='first_dense'): erdos_renyi_sparsity(ps, 0.9, first_dense=True)
    ss = erdos_renyi_sparsity([torch.empty(s) for s in [(4, 4), (2, 4), (4, 4), (3, 8), (2, 2)]], 0.85, last_dense=True)
    assert ss[-1] == 0
    with pytest.raises(ValueError, match='erk_power_scale'): erdos_renyi_sparsity(ps, 0.5, erk_power_scale=float('nan'))
    with pytest.raises(ValueError, match='no elements'): erdos_renyi_sparsity([torch.empty(0, 4), torch.empty(4, 4)], 0.5)

def test_unsupported_layers_refused_clearly():
    with pytest.raises(ValueError, match=r"\['0.weight'\].*sparse=False"):
        sparsify_model(nn.Sequential(nn.Embedding(10, 4, sparse=True), nn.Linear(4, 3)), 0.5, additional_types=(nn.Embedding,))
    m = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    with pytest.raises(ValueError, match=r"\['1.weight'\].*sparse_kaiming"):
        sparsify_model(m, 0.5, additional_types=(nn.LayerNorm,), weight_init='sparse_kaiming')
    assert not masked_params(m)  # refused before anything changed
    for f in (uniform_sparsity, erdos_renyi_sparsity):
        m = nn.Sequential(nn.Linear(0, 4), nn.Linear(4, 3)); sparsify_model(m, 0.5, sparse_f=f)  # the empty layer is skipped
        assert [mm for mm, n in masked_params(m)] == [m[1]]
    with pytest.raises(ValueError, match='no sparseable layer'): sparsify_model(nn.Sequential(nn.Linear(0, 4)), 0.5)
