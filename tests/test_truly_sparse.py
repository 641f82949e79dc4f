"Property tests of truly sparse layers: equality with the masked-dense model, and exact topology-update invariants over random shapes, densities and optimizers"
import copy, io, subprocess, sys
from pathlib import Path
import pytest, torch
from torch import nn
from hypothesis import given, settings, strategies as st, HealthCheck
from fastsparse.core import sparsify_model
from fastsparse.sparse_linear import (TrulySparseLinear, truly_sparse, masked_dense, truly_sparse_layers, update_truly_sparse_layer,
                                     update_truly_sparse, record_for_update, _indices_from_flat, _sort,
                                     _keep_highest, _n_draws)
from fastsparse.engine import _rank_keys

OPTS = {
    'sgd': lambda p: torch.optim.SGD(p, 0.05, momentum=0.9, weight_decay=1e-4),
    'adam': lambda p: torch.optim.Adam(p, 1e-2),
    'adamw': lambda p: torch.optim.AdamW(p, 1e-2),
}
shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))
prop = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

def _csr_valid(l):
    f = l.flat()
    assert f.numel() == l.n_active == l.values.numel()
    assert (f.diff() > 0).all() and (f.numel() == 0 or (f[0] >= 0 and f[-1] < l.numel))  # sorted, distinct, in range
    ref = _indices_from_flat(f, l.shape)
    for k in l._index_names: assert torch.equal(getattr(l, k), ref[k]), k

@prop
@given(shapes, st.floats(0., 0.95), st.integers(0, 3), st.booleans(), st.integers(0, 2**16))
def test_matches_masked_dense(shape, sparsity, lead, bias, seed):
    "Output, input gradient, weight gradient at active positions and bias gradient equal the masked-dense layer's"
    torch.manual_seed(seed)
    o, i = shape
    w, m = torch.randn(o, i), torch.rand(o, i) < 1 - sparsity
    b = torch.randn(o) if bias else None
    l = TrulySparseLinear.from_dense(w, m, b)
    x = torch.randn(*([2] * lead), 3, i)
    xd, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    wd = (w * m).requires_grad_()
    bd = b.clone().requires_grad_() if bias else None
    yd = nn.functional.linear(xd, wd, bd); ys = l(xs)
    torch.testing.assert_close(ys, yd, atol=1e-5, rtol=1e-5)
    gy = torch.randn_like(yd); yd.backward(gy); ys.backward(gy)
    torch.testing.assert_close(xs.grad, xd.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(l.values.grad, wd.grad[m], atol=1e-5, rtol=1e-5)
    if bias: torch.testing.assert_close(l.bias.grad, bd.grad, atol=1e-5, rtol=1e-5)

def _mlp(h): return nn.Sequential(nn.Linear(12, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 3))

@pytest.mark.parametrize('opt', list(OPTS))
def test_training_equals_masked(opt):
    "Five training steps of a truly sparse model equal those of its masked-dense twin, and a round trip gives the twin back"
    torch.manual_seed(0)
    dm = _mlp(20); sparsify_model(dm, 0.7)
    sm = truly_sparse(copy.deepcopy(dm))
    od, os_ = OPTS[opt](dm.parameters()), OPTS[opt](sm.parameters())
    for _ in range(5):
        x, y = torch.randn(16, 12), torch.randint(0, 3, (16,))
        for mdl, o in [(dm, od), (sm, os_)]: o.zero_grad(); nn.functional.cross_entropy(mdl(x), y).backward(); o.step()
    x = torch.randn(16, 12)
    torch.testing.assert_close(sm(x), dm(x), atol=1e-5, rtol=1e-4)
    back = masked_dense(copy.deepcopy(sm))
    for (ka, a), (kb, b) in zip(back.state_dict().items(), dm.state_dict().items()):
        assert ka == kb; torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)

def test_state_dict_weights_only_after_update():
    "A checkpoint taken after a count-changing update loads with weights_only=True into a fresh model"
    torch.manual_seed(0)
    m = _mlp(20); sparsify_model(m, 0.8); truly_sparse(m)
    update_truly_sparse_layer(truly_sparse_layers(m)[1], 5, 17, 'random', None, torch.Generator().manual_seed(0))
    buf = io.BytesIO(); torch.save(m.state_dict(), buf); buf.seek(0)
    fresh = _mlp(20); sparsify_model(fresh, 0.5); truly_sparse(fresh)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(4, 12)
    torch.testing.assert_close(fresh(x), m(x))
    for l in truly_sparse_layers(fresh): _csr_valid(l)

@prop
@given(shapes, st.floats(0.05, 0.95), st.floats(0., 1.), st.sampled_from(['random', 'gradient']), st.sampled_from(list(OPTS)),
       st.booleans(), st.integers(0, 2**16), st.integers(1, 5))
def test_update_invariants(shape, density, frac, grow, opt, regrow, seed, n_updates):
    "Exact counts, valid CSR, kept values and every optimizer state moved with their weights, grown ones zero, dropped ones gone"
    torch.manual_seed(seed)
    o, i = shape
    l = TrulySparseLinear(i, o, sparsity=1 - density, generator=torch.Generator().manual_seed(seed))
    op = OPTS[opt]([l.values, l.bias])
    for _ in range(n_updates):
        x = torch.randn(5, i)
        if grow == 'gradient': record_for_update([l])
        op.zero_grad(); l(x).pow(2).sum().backward(); op.step()
        if grow == 'gradient': op.zero_grad(); l(x).pow(2).sum().backward()
        n = l.n_active
        state_keys = [k for k, t in op.state[l.values].items() if torch.is_tensor(t) and t.shape == l.values.shape]
        before = {p: (v, *[op.state[l.values][k][j].item() for k in state_keys]) for j, (p, v) in enumerate(zip(l.flat().tolist(), l.values.tolist()))}
        d = min(round(frac * n), n)
        cap = l.numel - n + (d if regrow else 0)
        g = min(d + (seed % 3) - 1, cap) if d else 0  # sometimes one more or one fewer than dropped: redistribution
        g = max(g, 0)
        dr, gr = update_truly_sparse_layer(l, d, g, grow, op, torch.Generator().manual_seed(seed), allow_regrow=regrow, block_size=1 + seed % 50)
        _csr_valid(l)
        assert l.n_active == n - d + g and dr.numel() == d and gr.numel() == g
        assert gr.unique().numel() == g
        assert set(dr.tolist()) <= set(before)
        if not regrow: assert not set(gr.tolist()) & set(before)
        after = {p: (v, *[op.state[l.values][k][j].item() for k in state_keys]) for j, (p, v) in enumerate(zip(l.flat().tolist(), l.values.tolist()))}
        grown = set(gr.tolist())
        for p, vs in after.items():
            assert vs == (before[p] if p not in grown else (0.,) * (1 + len(state_keys)))
        assert not (set(dr.tolist()) - grown) & set(after)
        for k in state_keys: assert op.state[l.values][k].shape == l.values.shape

def test_set_growth_is_uniform():
    "SET growth chooses every inactive position with the same frequency"
    counts = torch.zeros(6 * 5)
    for s in range(600):
        l = TrulySparseLinear.from_dense(torch.ones(6, 5), torch.arange(30).view(6, 5) % 3 == 0)  # 10 active, 20 inactive
        counts[update_truly_sparse_layer(l, 3, 3, 'random', None, torch.Generator().manual_seed(s), keep_score_f=lambda v, o: v.abs())[1]] += 1
    act = torch.arange(30) % 3 == 0
    assert counts[act].sum() == 0
    assert (counts[~act] - 600 * 3 / 20).abs().max() < 40

@pytest.mark.parametrize('n', [0, 5, 4095, 4096, 20000, 32767, 32768, 50000])
def test_sort_matches_torch(n):
    "`_sort` (padded up to torch's radix-sort length on CPU) gives exactly torch's stable sort, duplicates and int16 keys included"
    g = torch.Generator().manual_seed(n)
    for dt, hi in [(torch.int32, 2**31 - 1), (torch.int32, 50), (torch.int16, 2**15 - 1), (torch.int64, 2**40)]:
        t = torch.randint(hi, (n,), generator=g, dtype=dt)
        if n: t[-1] = hi  # the dtype's largest value sorts before the padding
        v, i = _sort(t)
        rv, ri = t.sort(stable=True)
        assert torch.equal(v, rv) and torch.equal(i, ri)

def test_nan_scores_dropped_first():
    "NaN values are dropped before any finite one (as the masked engine does), and the positions flag only skips the returned positions"
    torch.manual_seed(0)
    l = TrulySparseLinear(50, 40, sparsity=0.9)
    nan_pos = torch.randperm(l.n_active)[:7]
    with torch.no_grad(): l.values[nan_pos] = float('nan'); l.values[:3] = float('inf')
    flat = l.flat()
    dr, gr = update_truly_sparse_layer(copy.deepcopy(l), 7, 7, 'random', None, torch.Generator().manual_seed(0))
    assert set(dr.tolist()) == set(flat[nan_pos].tolist())
    l2 = copy.deepcopy(l)
    assert update_truly_sparse_layer(l2, 7, 7, 'random', None, torch.Generator().manual_seed(0), positions=False) is None
    assert not l2.values.isnan().any() and l2.n_active == l.n_active
    assert torch.equal(l2.flat(), torch.tensor(sorted(set(flat.tolist()) - set(dr.tolist()) | set(gr.tolist()))))  # same draws, same result
    _csr_valid(l2)

@pytest.mark.parametrize('n,k', [(100, 30), (8192, 2458), (31360, 9408), (31360, 0), (160000, 48000), (160000, 159999), (50000, 1)])
def test_keep_highest_exact(n, k):
    "Exactly the `k` lowest keys are dropped, on the sampled-bracket path (n >= 8192) and the plain one, with ties and NaN"
    g = torch.Generator().manual_seed(n + k)
    for kind in ('uniform', 'ties', 'nan'):
        s = torch.rand(n, generator=g)
        if kind == 'ties': s = (s * 20).floor()  # 20 distinct values: the k-th sits in a run of ties
        if kind == 'nan': s[torch.randperm(n, generator=g)[:n // 50]] = float('nan')
        keys = _rank_keys(s, True, True)
        keep = _keep_highest(keys, k)
        assert keep.shape == (n,) and int((~keep).sum()) == k
        dropped, kept = keys[~keep], keys[keep]
        if k and kept.numel(): assert dropped.max() <= kept.min()  # nothing kept is lower than anything dropped
        if kind == 'nan': assert (~keep)[s.isnan()].all() or k < int(s.isnan().sum())  # NaN goes first

def test_keep_keys_order_as_engine_drops():
    "The truly sparse drop ranks keep scores by the engine's largest-first keys, which order them as the engine's drop does: NaN first, then -inf, then ascending"
    s = torch.tensor([0.5, -2., float('nan'), float('inf'), -float('inf'), 0., -0.25, 3., -3e38])
    for absolute in (True, False):
        a, b = _rank_keys(s.clone(), True, absolute), _rank_keys(s.clone(), False, absolute).neg_()
        assert torch.equal(a.argsort(stable=True), b.argsort(stable=True))

def test_n_draws_margin():
    "SET's draw count hits `k` distinct free positions with a margin of several standard deviations, and is bounded"
    for k, numel, free in [(48000, 16_000_000, 15_840_000), (9408, 3_136_000, 3_104_640), (1, 100, 50), (990, 1000, 1000), (10, 10, 10)]:
        d = _n_draws(k, numel, free)
        assert d <= 4 * numel
        want = k + 6 * k ** .5 + 64
        if want < free: assert free * (1 - (1 - 1 / numel) ** d) >= want - 1  # expected distinct free positions drawn
        else: assert d == 4 * numel

def test_update_large_layer_band_path():
    "A layer large enough for the sampled-bracket drop (and radix sorts) keeps exactly its largest |w| and moves values and momentum with them"
    torch.manual_seed(0)
    l = TrulySparseLinear(500, 400, sparsity=0.8)  # 40,000 active
    op = torch.optim.SGD([l.values], 0.1, momentum=0.9)
    l(torch.randn(8, 500)).pow(2).sum().backward(); op.step()
    for it in range(3):
        flat, v, mom = l.flat(), l.values.detach().clone(), op.state[l.values]['momentum_buffer'].clone()
        d = 12000
        thr = v.abs().kthvalue(d).values
        dr, gr = update_truly_sparse_layer(l, d, d, 'random', op, torch.Generator().manual_seed(it))
        _csr_valid(l)
        assert l.n_active == 40000 and dr.numel() == d and gr.numel() == d and not set(gr.tolist()) & set(flat.tolist())
        kept = ~torch.isin(flat, dr)
        assert v.abs()[kept].min() >= thr and v.abs()[~kept].max() <= thr
        pos = torch.searchsorted(l.flat(), flat[kept])
        assert torch.equal(l.values.detach()[pos], v[kept]) and torch.equal(op.state[l.values]['momentum_buffer'][pos], mom[kept])
        g = torch.searchsorted(l.flat(), gr)
        assert (l.values.detach()[g] == 0).all() and (op.state[l.values]['momentum_buffer'][g] == 0).all()

def test_indices_written_in_place_and_large_positions():
    "Index buffers are overwritten in place when the count is unchanged; int64 positions of a layer over 2**31 weights give int32 indices"
    torch.manual_seed(0)
    l = TrulySparseLinear(300, 200, sparsity=0.9)
    ptrs = {k: getattr(l, k).data_ptr() for k in l._index_names}
    update_truly_sparse_layer(l, 500, 500, 'random', None, torch.Generator().manual_seed(0))
    assert all(getattr(l, k).data_ptr() == ptrs[k] for k in l._index_names)
    _csr_valid(l)
    flat = torch.tensor([5, 99_999, 100_000, 4_999_999_999, 9_999_999_999])  # a 100,000 × 100,000 layer
    ix = _indices_from_flat(flat, (100_000, 100_000))
    assert ix['col_indices'].dtype == torch.int32 and ix['col_indices'].tolist() == [5, 99_999, 0, 99_999, 99_999]
    assert ix['crow_indices'][[0, 1, 2, 50_000, 100_000]].tolist() == [0, 2, 3, 4, 5]
    assert ix['t_col_indices'].tolist() == [1, 0, 0, 49_999, 99_999] and ix['t_perm'].tolist() == [2, 0, 1, 3, 4]

def test_last_update_positions_reused_only_while_valid():
    "The positions an update leaves are reused by the next one only while the index buffers are unchanged (load_state_dict, in-place writes and moves invalidate them)"
    from fastsparse.sparse_linear import _flat_now
    torch.manual_seed(0)
    a, b = TrulySparseLinear(60, 50, sparsity=0.9), TrulySparseLinear(60, 50, sparsity=0.9)
    update_truly_sparse_layer(a, 30, 30, 'random', None, torch.Generator().manual_seed(0))
    assert '_flat' in a.__dict__ and torch.equal(_flat_now(a, torch.int32), a.flat(torch.int32))
    assert _flat_now(a, torch.int32) is a.__dict__['_flat'][2]
    a.load_state_dict(b.state_dict())  # same count, other positions: written in place
    assert torch.equal(_flat_now(a, torch.int32), b.flat(torch.int32))
    update_truly_sparse_layer(a, 30, 30, 'random', None, torch.Generator().manual_seed(1))
    with torch.no_grad(): a.col_indices[:] = b.col_indices; a.crow_indices[:] = b.crow_indices
    assert torch.equal(_flat_now(a, torch.int32), b.flat(torch.int32))
    for swap in ('data', 'object'):  # storage swapped under the same tensors, or other tensors registered
        update_truly_sparse_layer(a, 30, 30, 'random', None, torch.Generator().manual_seed(2))
        for k in ('crow_indices', 'col_indices'):
            if swap == 'data': getattr(a, k).data = getattr(b, k).clone()
            else: a._buffers[k] = getattr(b, k).clone()
        assert torch.equal(_flat_now(a, torch.int32), b.flat(torch.int32))
    c = copy.deepcopy(a)
    assert '_flat' not in c.__dict__ and torch.equal(_flat_now(c, torch.int32), a.flat(torch.int32))

def test_rigl_accumulates_micro_batches():
    "Recorded over several forwards and backwards (gradient accumulation), RigL grows where the accumulated dense gradient is largest"
    torch.manual_seed(0)
    w, m = torch.randn(30, 40), torch.rand(30, 40) < 0.1
    l = TrulySparseLinear.from_dense(w * m, m)
    dense = (w * m).clone().requires_grad_()
    xs, gs = [torch.randn(8, 40) for _ in range(3)], [torch.randn(8, 30) for _ in range(3)]
    record_for_update([l])
    for x, g in zip(xs, gs):
        l(x).backward(g)
        (x @ dense.t()).backward(g)  # the masked-dense twin accumulates its dense gradient
    score = dense.grad.abs().masked_fill(m, -1).view(-1)
    want = score.topk(25).indices.sort().values
    for bs in (40, 2**22):  # one row per block, and one block
        l2 = copy.deepcopy(l)
        l2._rec = [[x, g] for x, g in l._rec]
        assert len(l2._rec) == 3
        _, grown = update_truly_sparse_layer(l2, 0, 25, 'gradient', block_size=bs)
        assert torch.equal(grown, want)
        assert not l2._rec
    record_for_update([l], False)
    assert not l._rec and not l.record

def test_rigl_block_memory_bounded():
    "A 2000×3000 layer's RigL update with a one-row block picks the same positions as with one block, and never forms the dense gradient"
    torch.manual_seed(0)
    lw = TrulySparseLinear(3000, 2000, sparsity=0.99)
    res = []
    for bs in [3000, 2**23]:
        l = copy.deepcopy(lw); record_for_update([l])
        l(torch.randn(8, 3000, generator=torch.Generator().manual_seed(1))).pow(2).sum().backward()
        res.append(update_truly_sparse_layer(l, 600, 600, 'gradient', block_size=bs)[1])
    assert torch.equal(res[0], res[1])

def test_update_model_drop_fraction_counts():
    "`update_truly_sparse` drops and regrows round(f * n) per layer and keeps every count"
    torch.manual_seed(0)
    m = _mlp(30); sparsify_model(m, 0.9); truly_sparse(m)
    op = torch.optim.SGD(m.parameters(), 0.1, momentum=0.9)
    ns = [l.n_active for l in truly_sparse_layers(m)]
    for _ in range(20):
        res = update_truly_sparse(m, 0.3, 'random', op, torch.Generator().manual_seed(0))
        assert res['active'] == ns and res['dropped'] == [int(0.3 * n + 0.5) for n in ns]

def test_bench_quick():
    "The benchmark's quick mode runs and ends with its summary line"
    script = Path(__file__).resolve().parents[1]/'bench'/'truly_sparse.py'
    r = subprocess.run([sys.executable, str(script), '--quick', '--device', 'cpu'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1].startswith('truly_sparse'), r.stdout

@pytest.mark.skipif(not (Path('/usr/share/datasets/fashion-mnist')/'t10k-labels-idx1-ubyte.gz').exists()
                    and not (Path('/usr/share/datasets/fashion-mnist')/'t10k-labels-idx1-ubyte').exists(), reason="Fashion-MNIST not installed")
def test_bench_large_quick():
    "The large-network benchmark's quick mode (TrulySparseLinear layers built directly, SET then RigL through the wrapper) runs and learns"
    script = Path(__file__).resolve().parents[1]/'bench'/'truly_sparse_large.py'
    r = subprocess.run([sys.executable, str(script), '--quick', '--device', 'cpu'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith('truly_sparse_large'), r.stdout
    acc = float(last.split('accuracy ')[1].split('%')[0])
    assert acc > 30, last  # well above chance (10 %) after 60 SET steps

def test_fastai_callback_drives_truly_sparse_layers():
    "DynamicSparseTrainingCallback trains a truly sparse model: exact budgets, density monitored, sparse_report, RigL equal to the masked twin"
    import copy
    from functools import partial
    import fastai.callback.progress
    from fastai.learner import Learner
    from fastai.optimizer import SGD
    from fastai.losses import CrossEntropyLossFlat
    from fastsparse import (sparsify_model, erdos_renyi_sparsity, truly_sparse, masked_dense, DynamicSparseTrainingCallback, DensityMonitor,
                            SET_presets, RigL_presets, sparse_report)
    from fastsparse.data import digits_dls
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    sparsify_model(base, 0.9, sparse_f=erdos_renyi_sparsity)
    res = {}
    for name, preset, conv in (('set', SET_presets, True), ('rigl', RigL_presets, True), ('rigl-masked', RigL_presets, False)):
        model = copy.deepcopy(base)
        if conv: truly_sparse(model)
        learn = Learner(digits_dls(bs=64, seed=0), model, loss_func=CrossEntropyLossFlat(), opt_func=partial(SGD, mom=0.9))
        dst, mon = DynamicSparseTrainingCallback(**preset, batches_per_update=4, seed=0), DensityMonitor()
        with learn.no_bar(), learn.no_logging(): learn.fit(2, 0.05, cbs=[dst, mon])
        assert dst.n_updates > 5 and dst.engine.budgets() == [r['active'] for r in sparse_report(base)]
        assert abs(mon.mean_density - 0.1) < 1e-3
        rows = learn.sparse_report()
        assert sum(r['active'] for r in rows) == sum(r['active'] for r in sparse_report(base)) and rows[0]['dense_flops'] == 64 * 128
        res[name] = learn.model
    back = masked_dense(copy.deepcopy(res['rigl']))
    for i in (0, 2, 4):  # RigL through the callback: the truly sparse model follows its masked-dense twin
        assert torch.equal(back[i].weight_mask, res['rigl-masked'][i].weight_mask)
        assert torch.allclose(back[i].weight, res['rigl-masked'][i].weight, atol=1e-5)

def test_engine_skips_unused_truly_sparse_layer():
    "A truly sparse layer the forward did not use keeps its topology, judged together with the masked layers that have gradients"
    from fastsparse.engine import DropGrowEngine, weight_magnitude, random_score
    torch.manual_seed(0)
    m = nn.ModuleDict(dict(a=nn.Linear(20, 30), b=nn.Linear(20, 30)))
    sparsify_model(m, 0.8)
    truly_sparse(m, modules=[m.b])
    eng = DropGrowEngine(m, weight_magnitude, random_score, seed=0)
    m.a(torch.randn(4, 20)).sum().backward()  # only the masked layer is used
    before = m.b.flat().clone()
    res = eng.update(0.3)
    assert res['dropped'][0] > 0 and res['dropped'][1] == 0 and torch.equal(m.b.flat(), before)
    m.b(torch.randn(4, 20)).sum().backward()  # now both have gradients
    assert eng.update(0.3)['dropped'][1] > 0
