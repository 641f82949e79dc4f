"Property tests (hypothesis) for the engine's selection: exactly the k best scores, on every path (subset, bracketed, plain topk), NaN and ±inf included"
import torch
from hypothesis import given, settings, strategies as st, HealthCheck
from fastsparse.engine import _select, _bracket_topk

cfg = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

def make_scores(kind:str, rows:int, cols:int, g:torch.Generator)->torch.Tensor:
    "Scores of a `rows`x`cols` layer, flattened: random, tied, constant per row, repeating per column, or mostly zero"
    n = rows * cols
    if kind == 'normal': return torch.randn(n, generator=g)
    if kind == 'ties': return torch.randint(-3, 4, (n,), generator=g).float()
    if kind == 'rows': return torch.randn(rows, generator=g).repeat_interleave(cols)
    if kind == 'cols': return torch.randn(cols, generator=g).repeat(rows)
    if kind in ('nonfinite', 'mostly_nonfinite'):  # a diverging run, or custom scores that forbid positions with ±inf
        s, u = torch.randn(n, generator=g), torch.rand(n, generator=g)
        p = 0.05 if kind == 'nonfinite' else 0.3
        s[u < p] = float('nan'); s[(u >= p) & (u < 2 * p)] = float('inf'); s[(u >= 2 * p) & (u < 3 * p)] = float('-inf')
        return s
    s = torch.zeros(n); s[torch.randperm(n, generator=g)[:n // 50]] = torch.rand(n // 50, generator=g) + 1  # dead gradients
    return s

@cfg
@given(st.sampled_from(['normal', 'ties', 'rows', 'cols', 'zeros', 'nonfinite', 'mostly_nonfinite']), st.integers(64, 600), st.integers(64, 600),
       st.floats(0.001, 0.999), st.floats(0, 1), st.booleans(), st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_select_exact(kind, rows, cols, density, kfrac, largest, absolute, cpu, seed):
    "`cpu=False` runs the GPU implementation (`nonzero_static`, plain `topk`) on CPU tensors"
    g = torch.Generator().manual_seed(seed)
    sc = make_scores(kind, rows, cols, g)
    allowed = torch.rand(sc.numel(), generator=g) < density
    n_allowed = int(allowed.sum())
    k = min(n_allowed, round(kfrac * n_allowed))
    got = _select(sc, allowed, n_allowed, k, largest, absolute, cpu)
    assert got.numel() == k and got.unique().numel() == k  # exactly k distinct positions
    assert bool(allowed[got].all())  # all allowed
    key = rank_key(sc, largest, absolute)
    ref = torch.where(allowed, key, torch.tensor(float('-inf'), dtype=key.dtype)).topk(k).values
    assert torch.equal(key[got].sort().values, ref.sort().values)  # the k best values (tied positions may differ)

def rank_key(sc, largest, absolute):
    "Reference order in float64, where there is room below -inf's stand-in: NaN worst (dropped first, grown last), then the infinities"
    v = (sc.abs() if absolute else sc).double()
    if not largest: v = -v
    out = torch.where(v == float('inf'), 1e300, torch.where(v == float('-inf'), -1e299, v))
    return torch.where(v.isnan(), 1e301 if not largest else -1e300, out)

@cfg
@given(st.integers(32768, 400_000), st.floats(0.0001, 0.9), st.integers(0, 2**31))
def test_bracket_answers_on_random_scores(n, kfrac, seed):
    "The bracketing pass (not the plain topk fallback) answers for ordinary random scores, and exactly"
    g = torch.Generator().manual_seed(seed)
    sc = torch.randn(n, generator=g)
    k = max(1, int(kfrac * n))
    got = _bracket_topk(sc, None, n, k)
    assert got is not None
    assert torch.equal(sc[got].sort().values, sc.topk(k).values.sort().values)

@cfg
@given(st.integers(32768, 200_000), st.floats(0.001, 0.999), st.floats(0, 1), st.floats(0, 0.5), st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_select_large_nonfinite(n, density, kfrac, bad, largest, cpu, seed):
    "Large layers (the bracketed CPU path) with many NaN/±inf scores: exactly k among the allowed, NaN last"
    g = torch.Generator().manual_seed(seed)
    sc, u = torch.randn(n, generator=g), torch.rand(n, generator=g)
    sc[u < bad] = float('nan'); sc[(u >= bad) & (u < 1.5 * bad)] = float('-inf'); sc[(u >= 1.5 * bad) & (u < 2 * bad)] = float('inf')
    allowed = torch.rand(n, generator=g) < density
    n_allowed = int(allowed.sum()); k = min(n_allowed, round(kfrac * n_allowed))
    got = _select(sc, allowed, n_allowed, k, largest, False, cpu)
    assert got.numel() == k and got.unique().numel() == k and bool(allowed[got].all())
    key = rank_key(sc, largest, False)
    ref = torch.where(allowed, key, torch.tensor(float('-inf'), dtype=key.dtype)).topk(k).values
    assert torch.equal(key[got].sort().values, ref.sort().values)
