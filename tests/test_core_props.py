"Property tests (hypothesis) for masks, distributions and sparsify_model"
import math
from functools import partial
import torch
from torch import nn
from hypothesis import given, settings, strategies as st, HealthCheck
from fastsparse.core import *

sparsities = st.floats(0, 0.999, exclude_max=True)
shapes = st.lists(st.integers(1, 40), min_size=1, max_size=4).map(tuple)
layer_lists = st.lists(st.one_of(st.tuples(st.integers(1, 300), st.integers(1, 300)),
                                 st.tuples(st.integers(1, 64), st.integers(1, 64), st.integers(1, 5), st.integers(1, 5))),
                       min_size=1, max_size=6)
cfg = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

@cfg
@given(shapes, sparsities, st.integers(0, 2**31))
def test_sparse_mask_exact(shape, s, seed):
    m = sparse_mask(shape, s, generator=torch.Generator().manual_seed(seed))
    assert m.dtype == torch.bool and tuple(m.shape) == shape
    assert int(m.sum()) == n_active(math.prod(shape), s)

def _counts(shapes, ss): return [n_active(math.prod(sh), s) for sh, s in zip(shapes, ss)]

@cfg
@given(layer_lists, sparsities)
def test_uniform_exact_per_layer(shapes, s):
    ps = [torch.empty(sh) for sh in shapes]
    for f in (uniform_sparsity, first_layer_dense_uniform):
        ss = f(ps, s)
        assert len(ss) == len(ps) and all(0 <= x < 1 for x in ss)
    assert first_layer_dense_uniform(ps, s)[0] == 0

@cfg
@given(layer_lists, sparsities, st.booleans(), st.sampled_from([0., 0.5, 1., 2.]), st.booleans(), st.booleans())
def test_erk_total_budget_exact(shapes, s, kernel, power, first, last):
    ps = [torch.empty(sh) for sh in shapes]
    total = sum(p.numel() for p in ps)
    dense_need = sum(ps[i].numel() for i in {0 if first else None, len(ps)-1 if last else None} - {None})
    try: ss = erdos_renyi_sparsity(ps, s, include_kernel=kernel, erk_power_scale=power, first_dense=first, last_dense=last)
    except ValueError as e:
        n_promised = len({0 if first else None, len(ps)-1 if last else None} - {None})
        assert (n_active(total, s) - dense_need < len(ps) - n_promised or n_active(total, s) < len(ps)) and 'model_sparsity' in str(e); return
    assert all(0 <= x < 1 for x in ss)
    counts = _counts(shapes, ss)
    assert sum(counts) == n_active(total, s)
    assert all(0 <= c <= p.numel() for c, p in zip(counts, ps))
    if first: assert ss[0] == 0  # promised dense layers stay dense, even when the final rounding is tight
    if last: assert ss[-1] == 0
    # ERK ordering: among layers that are not dense, a larger raw ER(K) score never gets a lower density
    raw = [(sum(sh if kernel else sh[:2]) / math.prod(sh if kernel else sh[:2])) ** power for sh in shapes]
    free = [i for i in range(len(ps)) if ss[i] > 0 and not (first and i == 0) and not (last and i == len(ps)-1)]
    for i in free:
        for j in free:
            if raw[i] > raw[j] * 1.001: assert (1 - ss[i]) >= (1 - ss[j]) - 2 / min(ps[i].numel(), ps[j].numel())

def _mlp(widths): return nn.Sequential(*[nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])

@cfg
@given(st.lists(st.integers(2, 60), min_size=2, max_size=5), sparsities, st.sampled_from(['uniform', 'erk', 'er', 'first']))
def test_sparsify_model_exact_counts(widths, s, dist):
    f = dict(uniform=uniform_sparsity, erk=erdos_renyi_sparsity, er=partial(erdos_renyi_sparsity, include_kernel=False),
             first=first_layer_dense_uniform)[dist]
    model = _mlp(widths)
    ps = [m.weight for m in model]
    try: expected = _counts([p.shape for p in ps], f(ps, s))
    except ValueError as e:  # ER(K) refuses to leave a layer without any weight
        assert dist in ('erk', 'er') and n_active(sum(p.numel() for p in ps), s) < len(ps); return
    sparsify_model(model, s, sparse_f=f)
    for m, c in zip(model, expected):
        mask = getattr(m, 'weight_mask', None)
        if mask is None: assert c == m.weight.numel()  # dense layers get no mask
        else:
            assert int(mask.sum()) == c
            assert int((m.weight != 0).sum()) <= c and not (m.weight[~mask] != 0).any()

@cfg
@given(st.integers(0, 2**31))
def test_same_seed_same_masks_deterministic_order(seed):
    def build():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8, 4))
        sparsify_model(model, 0.7, generator=torch.Generator().manual_seed(seed))
        return model
    a, b = build(), build()
    assert [n for n, _ in a.named_buffers()] == ['0.weight_mask', '2.weight_mask', '4.weight_mask']
    for (na, ma), (nb, mb) in zip(a.named_buffers(), b.named_buffers()): assert na == nb and torch.equal(ma, mb)
    assert [id(m) for m, n in masked_params(a)] == [id(a[0]), id(a[2]), id(a[4])]

small_layers = st.lists(st.tuples(st.integers(1, 8), st.integers(1, 8)), min_size=2, max_size=5)

@cfg
@given(small_layers, st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.97]), st.booleans(), st.booleans())
def test_erk_promised_dense_small_layers(shapes, s, first, last):
    "Tiny layers at high sparsity, where the final rounding is tight: a layer promised dense stays dense, or a clear error"
    ps = [torch.empty(sh) for sh in shapes]
    try: ss = erdos_renyi_sparsity(ps, s, first_dense=first, last_dense=last)
    except ValueError as e: assert 'model_sparsity' in str(e); return
    counts = _counts(shapes, ss)
    assert sum(counts) == n_active(sum(p.numel() for p in ps), s) and all(c >= 1 for c in counts)
    if first: assert counts[0] == ps[0].numel()
    if last: assert counts[-1] == ps[-1].numel()

class _UserNet(nn.Module):
    "A user's model with children named like wrapper fields (`module`, `_orig_mod`)"
    def __init__(self, widths, names):
        super().__init__()
        for n, (a, b) in zip(names, zip(widths[:-1], widths[1:])): setattr(self, n, nn.Linear(a, b))
        self.names = names
    def forward(self, x):
        for n in self.names: x = getattr(self, n)(x).relu()
        return x

@cfg
@given(st.lists(st.integers(2, 20), min_size=3, max_size=5), st.permutations(['module', '_orig_mod', 'model', 'net']), st.integers(0, 100))
def test_user_attributes_named_like_wrappers(widths, names, seed):
    "unwrap_model never mistakes a user's child for a wrapper: every layer of the model is updated"
    from fastsparse.engine import DropGrowEngine, random_score
    torch.manual_seed(seed)
    m = _UserNet(widths, names[:len(widths) - 1])
    assert unwrap_model(m) is m
    sparsify_model(m, 0.5)
    eng = DropGrowEngine(unwrap_model(m), grow_score_f=random_score, seed=seed)
    assert len(eng.params) == len(widths) - 1
