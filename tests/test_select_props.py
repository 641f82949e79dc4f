"Property tests (hypothesis) for the engine's selection: exactly the k best scores, on every path (subset, bracketed, plain topk)"
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
    s = torch.zeros(n); s[torch.randperm(n, generator=g)[:n // 50]] = torch.rand(n // 50, generator=g) + 1  # dead gradients
    return s

@cfg
@given(st.sampled_from(['normal', 'ties', 'rows', 'cols', 'zeros']), st.integers(64, 600), st.integers(64, 600),
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
    v = sc.abs() if absolute else sc
    fill = torch.tensor(float('-inf') if largest else float('inf'))
    ref = torch.where(allowed, v, fill).topk(k, largest=largest).values
    assert torch.equal(v[got].sort().values, ref.sort().values)  # the k best values (tied positions may differ)

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
