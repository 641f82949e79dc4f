"FSDP2 (`fully_shard`) on two CPU processes (gloo) against one process: masks, weights, budgets, optimizer state, checkpoints, fastai"
import os, sys, json, socket, tempfile
from functools import partial
from pathlib import Path
import pytest, torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

STEPS, EVERY, BS = 12, 3, 16  # updates at steps 3 and 6 (< 75 % of 12)
METHODS = ['static', 'SET', 'SNFS', 'RigL', 'RigL-regrow']

def make():
    "Rows 33, 17 and 5: uneven shards on two ranks. tanh, not ReLU: no dead units, so no exact ties among gradient scores (see the docs)"
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 33), nn.Tanh(), nn.Linear(33, 17), nn.Tanh(), nn.Linear(17, 5))

def batch(t, rank=0, world=1):
    "Global batch `t` (the same in every process), and the rows rank `rank` of `world` trains on"
    g = torch.Generator().manual_seed(1000 + t)
    x, y = torch.randn(BS, 20, generator=g), torch.randint(0, 5, (BS,), generator=g)
    n = BS // world
    return x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]

def shard(model, per_layer=True, **kw):
    from torch.distributed.fsdp import fully_shard
    if per_layer:
        for l in model:
            if isinstance(l, nn.Linear): fully_shard(l, **kw)
    return fully_shard(model, **kw)

def full(t):
    "The whole tensor (gathered from every rank if sharded)"
    return t.full_tensor() if hasattr(t, 'full_tensor') else t

def sparsify(model, seed=1, **kw):
    from fastsparse import sparsify_model, erdos_renyi_sparsity
    return sparsify_model(model, 0.7, sparse_f=erdos_renyi_sparsity, generator=torch.Generator().manual_seed(seed), **kw)

def wrapper(model, opt, method, **kw):
    from fastsparse import DynamicSparseTrainingOptimizerWrapper, SET_presets, SNFS_presets, RigL_presets
    if method == 'static': return None
    name, *opts = method.split('-')  # 'RigL-regrow': RigL with allow_regrow=True
    preset = dict(SET=SET_presets, SNFS=SNFS_presets, RigL=RigL_presets)[name]
    return DynamicSparseTrainingOptimizerWrapper(model, opt, batches_per_update=EVERY, total_steps=STEPS, seed=0, allow_regrow='regrow' in opts, **{**preset, **kw})

def checked(engine, rec):
    "Wrap `engine.update`: after each update record the whole masks and budgets, and check grown weights and their momentum are 0 on this rank's rows"
    from fastsparse.sharded import _local
    orig = engine.update
    def update(f, opt=None):
        before = [_local(m).clone() for m in engine.masks]
        res = orig(f, opt)
        for w, m, b in zip(engine.weights, engine.masks, before):
            grown = _local(m) & ~b
            assert _local(w)[grown].abs().sum() == 0, 'a grown weight is not 0'
            st = opt.state[w].get('momentum_buffer') if opt is not None else None
            if st is not None: assert _local(st)[grown].abs().sum() == 0, 'the momentum of a grown weight is not 0'
        rec['masks'].append([full(m).clone() for m in engine.masks]); rec['budgets'].append(engine.budgets())
        return res
    engine.update = update

def train(method, rank=0, world=1, when=None, start=0, stop=STEPS, model=None, opt=None, so=None, shard_kw=None, rec=None):
    "Train the test model with `method` from step `start` to `stop` (sharded before/after sparsifying if `when`); return model, opt, wrapper, record"
    from fastsparse import weights_and_masks
    from fastsparse.sharded import _local
    if model is None:
        model = make()
        if when == 'after': shard(model, **(shard_kw or {}))
        sparsify(model)
        if when == 'before': shard(model, **(shard_kw or {}))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        so = wrapper(model, opt, method)
    rec = rec if rec is not None else dict(masks=[], budgets=[])
    if so is not None and not getattr(so.engine.update, '__wrapped_check__', False): checked(so.engine, rec); so.engine.update.__wrapped_check__ = True
    for t in range(start, stop):
        x, y = batch(t, rank, world)
        nn.functional.cross_entropy(model(x), y).backward()
        (so or opt).step(); (so or opt).zero_grad()
        for w, m in zip(*weights_and_masks(model)): assert _local(w)[~_local(m)].abs().sum() == 0, 'a masked weight is not 0'
    return model, opt, so, rec

def summary(model, rec=None):
    from fastsparse import weights_and_masks
    ws, ms = weights_and_masks(model)
    return dict(masks=[full(m).clone() for m in ms], weights=[full(w).detach().clone() for w in ws], rec=rec)

def fastai_run(rank=0, world=1):
    "The RigL callback in a fastai `Learner`; on several ranks fastai's `DistributedDL` gives each rank its half of the items: its rows of every global batch"
    from fastai.learner import Learner
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.optimizer import SGD
    from fastai.losses import CrossEntropyLossFlat
    from fastai.distributed import DistributedDL
    from fastsparse import DynamicSparseTrainingCallback, DensityMonitor, RigL_presets
    items = [tuple(r) for rk in range(world) for t in range(STEPS) for r in zip(*batch(t, rk, world))]  # rank 0's rows of every batch, then rank 1's
    n = BS // world
    dl = lambda xs: DataLoader(xs, bs=n) if world == 1 else DistributedDL(DataLoader(xs, bs=n), rank=rank, world_size=world)
    dls = DataLoaders(dl(items), dl(items[:BS]), device='cpu')
    model = make()
    if world > 1: shard(model)
    sparsify(model)
    cb, dm = DynamicSparseTrainingCallback(**RigL_presets, batches_per_update=EVERY, seed=0), DensityMonitor()
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), opt_func=partial(SGD, mom=0.9), cbs=[cb, dm])
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 0.1)
    return dict(summary(model), n_updates=cb.n_updates, density=dm.mean_density)

def report_rows(model):
    from fastsparse import sparse_report, inference_flops
    x = batch(0)[0]
    return dict(rows=[{k: r[k] for k in ('layer', 'shape', 'numel', 'active', 'density', 'dense_flops', 'sparse_flops')} for r in sparse_report(model, flops_input=x)],
                flops=inference_flops(model, x))

def save_dcp(model, opt, so, path):
    import torch.distributed.checkpoint as dcp
    from fastsparse import distributed_state_dict
    dcp.save(distributed_state_dict(model, opt, so), checkpoint_id=str(path))

def resume(method, path, start, rank=0, world=1, when=None):
    "A fresh model (other masks), optimizer and wrapper, loaded from the checkpoint at `path`, trained from step `start` to the end"
    import torch.distributed.checkpoint as dcp
    from fastsparse import distributed_state_dict, load_distributed_state_dict
    model = make()
    if when: shard(model)
    sparsify(model, seed=7)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    so = wrapper(model, opt, method)
    sd = distributed_state_dict(model, opt, so)
    dcp.load(sd, checkpoint_id=str(path))
    load_distributed_state_dict(model, sd, opt, so)
    if so is not None:  # masks and counts as saved: every layer at its budget, the recorded sparsities follow the masks
        assert so.n_step == start and [h['step'] for h in so.schedule.history] == [t for t in (3, 6) if t < start]
        for (m, n), b in zip(so.engine.params, so.engine.budgets()): assert getattr(m, f'{n}_sparsity') == 1 - b / getattr(m, n).numel()
    return train(method, rank, world, start=start, model=model, opt=opt, so=so)

def same(a, b, atol=1e-5):
    "Masks equal, weights within `atol`"
    assert len(a['masks']) == len(b['masks'])
    for x, y in zip(a['masks'], b['masks']): assert torch.equal(x, y)
    for x, y in zip(a['weights'], b['weights']): torch.testing.assert_close(x, y, atol=atol, rtol=0)

def _lap(name, rank, t0=[None]):
    "Print the CPU seconds of the scenario just run (FASTSPARSE_TEST_TIMES=1)"
    import time
    t = time.process_time()
    if os.environ.get('FASTSPARSE_TEST_TIMES') and t0[0] is not None and rank == 0: print(f'{name}: {t - t0[0]:.1f} s CPU', flush=True)
    t0[0] = t

def _scenarios(rank, world, out):
    from torch.distributed.tensor import Shard
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, StateDictOptions
    from fastsparse import sparsify_model, truly_sparse, export_sparse, weights_and_masks, DynamicSparseTrainingOptimizerWrapper, SNFS_presets
    from fastsparse.sharded import topk_sharded, _local
    res = {}
    _lap('before 1', rank)
    # 1. every method, sharded after sparsifying and before
    for method in METHODS:
        model, opt, so, rec = train(method, rank, world, when='after')
        res[method] = summary(model, rec)
        if method == 'RigL': res['report'] = report_rows(model)
        if method == 'SET':
            sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if rank == 0: torch.save(sd, out/'full_SET.pt')
    for method in ('SET', 'RigL'): res[f'{method}-before'] = summary(*train(method, rank, world, when='before')[::3])
    _lap('before 2', rank)
    # 2. checkpoints (torch.distributed.checkpoint): the step before an update and the update step; 2 ranks -> 2 ranks, 1 process -> 2 ranks
    for method, stop in [('static', 7), ('SET', 6), ('SET', 7), ('SNFS', 6), ('SNFS', 7), ('RigL', 6), ('RigL', 7)]:
        model, opt, so, _ = train(method, rank, world, when='after', stop=stop)
        save_dcp(model, opt, so, out/f'dcp-{method}-{stop}')
        res[f'resumed-{method}-{stop}'] = summary(*resume(method, out/f'dcp-{method}-{stop}', stop, rank, world, when='after')[::3])
        same(res[f'resumed-{method}-{stop}'], res[method], atol=0)
    res['from-1-process'] = summary(*resume('RigL', out/'dcp-1proc-RigL-7', 7, rank, world, when='after')[::3])
    _lap('before 3', rank)
    # 3. fastai Learner with the callback on the sharded model
    res['fastai'] = fastai_run(rank, world)
    _lap('before 4', rank)
    # 4. HSDP meshes: (replicate 1, shard 2) and (replicate 2, shard 1)
    for shape in [(1, 2), (2, 1)]:
        mesh = init_device_mesh('cpu', shape, mesh_dim_names=('replicate', 'shard'))
        res[f'hsdp-{shape}'] = summary(*train('SET', rank, world, when='after', shard_kw=dict(mesh=mesh))[::3])
    _lap('before 5', rank)
    # 5. bf16 mixed precision: the fp32 shards are masked, budgets exact (checked in `train`)
    mp_kw = dict(mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32))
    model, opt, so, rec = train('RigL', rank, world, when='after', shard_kw=mp_kw)
    assert all(w.dtype == torch.float32 for w in weights_and_masks(model)[0]) and len(rec['budgets']) == 2
    assert all(b == rec['budgets'][0] for b in rec['budgets'])
    _lap('before 6', rank)
    # 6. selection over shards: random keys as topk; ties at the cut to the lowest positions; -0.0 == 0.0
    g = torch.Generator().manual_seed(3)
    cases = [torch.randn(23, generator=g), torch.tensor([1., 0., 0., -0., 2., 0., 0., 0., 3., 0., 0.]), torch.randint(0, 3, (37,), generator=g).float()]
    for keys in cases:
        for k in range(keys.numel() + 1):
            chunk = -(-keys.numel() // world); lo = min(rank * chunk, keys.numel()); part = keys[lo:lo + chunk]
            idx = topk_sharded([part, part, part[:0]], [k, keys.numel() // 2, 0], dist.group.WORLD)
            sel = [None] * world; dist.all_gather_object(sel, (idx[0] + lo).tolist())
            chosen = sorted(i for s in sel for i in s)
            assert len(chosen) == k and idx[2].numel() == 0
            if k:
                kth = keys[chosen].min()
                better, tied = (keys > kth).nonzero().squeeze(1).tolist(), (keys == kth).nonzero().squeeze(1).tolist()
                assert chosen == sorted(better + tied[:k - len(better)]), (keys, k, chosen)
    _lap('before 7', rank)
    # 7. what needs whole layers refuses a sharded model; other layouts and custom shares raise, naming the layer
    model = make(); shard(model); sparsify(model)
    for f in (truly_sparse, export_sparse):
        try: f(model); raise AssertionError(f'{f.__name__} accepted a sharded model')
        except ValueError as e: assert 'sharded (FSDP2' in str(e)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    so = DynamicSparseTrainingOptimizerWrapper(model, opt, batches_per_update=1, total_steps=8, seed=0, **{**SNFS_presets, 'redistribute_f': lambda p, m, o: p.abs().mean()})
    nn.functional.cross_entropy(model(batch(0, rank, world)[0]), batch(0, rank, world)[1]).backward(); so.step()
    try: nn.functional.cross_entropy(model(batch(1, rank, world)[0]), batch(1, rank, world)[1]).backward(); so.step(); raise AssertionError('custom shares accepted')
    except ValueError as e: assert 'mean_of' in str(e)
    place = dict(shard_placement_fn=lambda p: Shard(1) if p.dim() == 2 else None)
    for when in ('after', 'before'):  # sparsify_model refuses the sharded weight; a mask made before sharding fails at the first use
        m2 = nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 4))
        if when == 'before': sparsify_model(m2, 0.5)
        shard(m2, per_layer=False, **place)
        try:
            if when == 'after': sparsify_model(m2, 0.5)
            else: DynamicSparseTrainingOptimizerWrapper(m2, torch.optim.SGD(m2.parameters(), lr=0.1), total_steps=4)
            raise AssertionError('Shard(1) accepted')
        except ValueError as e: assert '0.weight' in str(e) and 'Shard(dim=1)' in str(e), str(e)
    _lap('before 8', rank)
    # 8. enforcement before every forward: on the shards (hook before FSDP's all-gather) and on the weights FSDP gathered for the root
    for per_layer, when in ((True, 'after'), (False, 'before')):
        m3 = make()
        if when == 'after': shard(m3, per_layer=per_layer)
        h = sparsify(m3, enforce_masks='forward')
        if when == 'before': shard(m3, per_layer=per_layer)
        ref = make(); sparsify(ref)
        ws, ms = weights_and_masks(m3)
        with torch.no_grad():
            for w in ws: _local(w).fill_(0.5)  # masked positions too, behind the enforcer's back
            for w, m in zip(weights_and_masks(ref)[0], weights_and_masks(ref)[1]): w.fill_(0.5); w.mul_(m)
        torch.testing.assert_close(m3(batch(0)[0]), ref(batch(0)[0]))
        h.remove()
    _lap('before save', rank)
    torch.save(res, out/f'rank{rank}.pt')

def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    torch.set_num_threads(1)
    _scenarios(rank, world, Path(out))
    dist.barrier(); dist.destroy_process_group()
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)  # torch's gloo teardown at interpreter exit is slow and sometimes aborts (see fastai_distrib_script.py)

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "One process's runs, then one launch of two ranks running every sharded scenario"
    out = tmp_path_factory.mktemp('sharded')
    one = {m: summary(*train(m)[::3]) for m in METHODS}
    model, opt, so, _ = train('RigL', stop=7)
    save_dcp(model, opt, so, out/'dcp-1proc-RigL-7')
    one['fastai'] = fastai_run()
    one['report'] = report_rows(train('RigL')[0])
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return one, [torch.load(out/f'rank{r}.pt', weights_only=False) for r in range(2)], out

@pytest.mark.parametrize('method', METHODS)
def test_same_as_one_process(runs, method):
    one, (r0, r1), _ = runs
    same(r0[method], one[method]); same(r1[method], r0[method], atol=0)
    if method != 'static':
        assert len(r0[method]['rec']['budgets']) == 2
        assert r0[method]['rec']['budgets'] == one[method]['rec']['budgets']  # exact budgets, each update
        for a, b in zip(r0[method]['rec']['masks'], one[method]['rec']['masks']): same(dict(masks=a, weights=[]), dict(masks=b, weights=[]))
        if method != 'SNFS': assert all(b == r0[method]['rec']['budgets'][0] for b in r0[method]['rec']['budgets'])
        if method == 'SNFS':  # layer budgets moved, the total kept
            from fastsparse import weights_and_masks
            m = make(); sparsify(m); b0 = [int(x.sum()) for x in weights_and_masks(m)[1]]
            assert all(sum(b) == sum(b0) for b in r0[method]['rec']['budgets']) and r0[method]['rec']['budgets'][0] != b0
    if method in ('SET', 'RigL'): same(r0[f'{method}-before'], one[method])

def test_checkpoints(runs):
    import torch.distributed.checkpoint as dcp
    from fastsparse import distributed_state_dict, load_distributed_state_dict
    one, (r0, r1), out = runs
    same(r0['from-1-process'], one['RigL'])  # 1 process -> 2 ranks
    for method, stop in [('SET', 6), ('RigL', 7)]:  # 2 ranks -> 1 process
        model, opt, so, _ = resume(method, out/f'dcp-{method}-{stop}', stop)
        same(summary(model), one[method])
        assert so.n_updates == 2 and so.n_step == STEPS

def test_fastai_and_reports(runs):
    one, (r0, r1), _ = runs
    same(r0['fastai'], one['fastai']); assert r0['fastai']['n_updates'] == one['fastai']['n_updates'] == 2
    assert r0['fastai']['density'] == one['fastai']['density']
    assert r0['report'] == one['report'] == r1['report']

def test_full_state_dict_loads_unsharded(runs):
    one, (r0, r1), out = runs
    model = make(); sparsify(model, seed=5)
    model.load_state_dict(torch.load(out/'full_SET.pt'))
    same(summary(model), r0['SET'], atol=0)

def test_hsdp_meshes(runs):
    one, (r0, r1), _ = runs
    for shape in [(1, 2), (2, 1)]: same(r0[f'hsdp-{shape}'], one['SET'])
