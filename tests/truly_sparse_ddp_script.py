"""Truly sparse (and masked) training in several processes: run under `torchrun --nproc_per_node 2 <this> <out>` (gloo, CPU).

One launch runs every scenario of `SCENARIOS` (process start-up dominates the cost) and writes `<out>/<scenario>_<rank>.pt` with what each rank
held after every topology update; `tests/test_distributed.py` compares the ranks with each other and with one process trained on the
concatenated global batch (`wrapper_run(..., world=1)` and `fastai_reference`, run by the test itself)."""
import io, os, sys
from functools import partial
from pathlib import Path
import torch
from torch import nn
import torch.distributed as dist
from fastsparse import (sparsify_model, truly_sparse, truly_sparse_layers, DynamicSparseTrainingOptimizerWrapper, erdos_renyi_sparsity,
                        SET_presets, SNFS_presets, RigL_presets, opt_state)

EVERY, STEPS, TOTAL = 2, 10, 20  # wrapper runs: updates at steps 2, 4, 6, 8
ROWS = (16, 16)  # rows of the global batch on each rank
UNEVEN = (16, 11)  # a last-batch-like split: the all-gather pads the shorter rank

def _model(kind:str='truly_sparse')->nn.Module:
    "A model whose truly sparse layers take both ways to RigL's global gradient at 16 rows per rank: all-reduce (20→96, 96→4) and all-gather (96→96)"
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(20, 96), nn.ReLU(), nn.Linear(96, 96), nn.ReLU(), nn.Linear(96, 4))
    sparsify_model(m, 0.8, sparse_f=erdos_renyi_sparsity, generator=torch.Generator().manual_seed(0))
    if kind == 'truly_sparse':
        truly_sparse(m)
        m[0].block_size = 200  # 20-wide rows: the all-reduce runs block by block (10 rows a block)
    return m

def _batch(t:int, rows=ROWS):
    "The global batch of step `t`"
    g = torch.Generator().manual_seed(1000 + t)
    return torch.randn(sum(rows), 20, generator=g), torch.randint(0, 4, (sum(rows),), generator=g)

def _chunks(rows, rank:int, world:int):
    "Row ranges of the global batch: this rank's one, or (one process) every rank's"
    starts = [sum(rows[:r]) for r in range(len(rows))]
    return [(starts[r], starts[r] + rows[r]) for r in ([rank] if world > 1 else range(len(rows)))]

def _layer_state(layer, opt)->dict:
    "What a truly sparse layer holds: positions, values and every value-shaped optimizer state tensor"
    st = {k: v.clone() for k, v in opt_state(opt, layer.values).items() if isinstance(v, torch.Tensor) and v.shape == layer.values.shape}
    return dict(flat=layer.flat().clone(), values=layer.values.detach().clone(), state=st)

def probe_updates(engine, opt_of, model)->list:
    "Record, after every update of `engine`, each truly sparse layer's state and which of its positions were grown by it"
    snaps, update = [], engine.update
    def probed(f, opt=None):
        before = [l.flat().clone() for l in truly_sparse_layers(model)]
        res = update(f, opt)
        after = [_layer_state(l, opt_of()) for l in truly_sparse_layers(model)]
        for a, b in zip(after, before): a['grown'] = ~torch.isin(a['flat'], b)
        snaps.append(dict(layers=after, budgets=engine.budgets(), masks=[m.clone() for m in engine.masks]))
        return res
    engine.update = probed
    return snaps

def wrapper_run(method:str, rank:int=0, world:int=1, kind:str='truly_sparse', rows=ROWS, broadcast_buffers:bool=True, seed=0,
                steps=range(STEPS), resume:bytes|None=None, save_at:int|None=None)->dict:
    "Train with the PyTorch wrapper: in DDP on this rank's rows, or (world 1) in one process on the whole global batch with the same loss"
    model = _model(kind)
    torch.manual_seed(100 + rank)  # the global RNG differs between ranks: nothing may depend on it
    net = nn.parallel.DistributedDataParallel(model, broadcast_buffers=broadcast_buffers) if world > 1 else model
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    so = DynamicSparseTrainingOptimizerWrapper(net, opt, batches_per_update=EVERY, total_steps=TOTAL, seed=seed,
                                               **dict(SET=SET_presets, SNFS=SNFS_presets, RigL=RigL_presets)[method])
    if resume is not None:
        sd = torch.load(io.BytesIO(resume), weights_only=True)
        model.load_state_dict(sd['model']); opt.load_state_dict(sd['opt']); so.load_state_dict(sd['so'])
    snaps, ckpt = probe_updates(so.engine, lambda: opt, model), None
    for t in steps:
        if t == save_at:
            buf = io.BytesIO(); torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), so=so.state_dict()), buf); ckpt = buf.getvalue()
        (x, y), cs = _batch(t, rows), _chunks(rows, rank, world)
        out = net(torch.cat([x[a:b] for a, b in cs])).split([b - a for a, b in cs])
        loss = sum(nn.functional.cross_entropy(o, y[a:b]) for o, (a, b) in zip(out, cs)) / len(cs)
        loss.backward()  # DDP averages the gradients of each rank's mean loss: one process takes the mean of the ranks' mean losses
        so.step(); so.zero_grad()
    return dict(snaps=snaps, final={k: v.clone() for k, v in model.state_dict().items()}, n_updates=so.n_updates, ckpt=ckpt,
                opt=[{k: v.clone() for k, v in s.items() if isinstance(v, torch.Tensor)} for s in opt.state_dict()['state'].values()])

def _wrapper_resume(method:str, rank:int, world:int, kind:str='truly_sparse')->dict:
    "Save after 6 steps (step 6 updates) on rank 0, load it on every rank into a fresh DDP run and finish: equal to the uninterrupted run"
    full = wrapper_run(method, rank, world, kind, save_at=6)
    blob = [full['ckpt'] if rank == 0 else None]
    dist.broadcast_object_list(blob, 0)  # every rank loads rank 0's checkpoint
    res = wrapper_run(method, rank, world, kind, seed=7, steps=range(6, STEPS), resume=blob[0])
    return dict(full=full['final'], resumed=res['final'], full_opt=full['opt'], resumed_opt=res['opt'], n_updates=(full['n_updates'], res['n_updates']))

def _fastai_learner(method:str, rank:int, path=None, seed:int=0, every:int=4):
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.optimizer import SGD
    from fastsparse.callbacks import DynamicSparseTrainingCallback
    from fastsparse.data import digits_dls
    torch.manual_seed(seed)
    learn = Learner(digits_dls(bs=32, seed=0), nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
                    loss_func=CrossEntropyLossFlat(), opt_func=partial(SGD, mom=0.9), path=path or '.')
    sparsify_model(learn, 0.9, sparse_f=erdos_renyi_sparsity, generator=torch.Generator().manual_seed(seed))
    truly_sparse(learn)
    torch.manual_seed(100 + rank)  # the global RNG differs between ranks
    dst = DynamicSparseTrainingCallback(**dict(SET=SET_presets, RigL=RigL_presets)[method], batches_per_update=every, seed=seed)
    return learn, dst

def _probe_cb(dst, batches:list):
    "A fastai callback that records each training batch and (in `dst.engine._probed`) every update"
    from fastai.callback.core import Callback
    class Probe(Callback):
        order = dst.order + 1  # after the callback has built its engine
        def before_fit(self):
            if not hasattr(dst.engine, '_probed'): dst.engine._probed = probe_updates(dst.engine, lambda: self.learn.opt, self.learn.model)
        def before_batch(self):
            if self.training: batches.append((self.xb[0].clone(), self.yb[0].clone()))
    return Probe()

def _fastai(method:str, rank:int, world:int)->dict:
    "`learn.distrib_ctx(cpu=True)` with the callback, one epoch of digits (21 steps of 32 rows per rank, updates at 4, 8, 12)"
    from fastai.distributed import DistributedDL  # noqa: F401  (fastai's distributed patches of Learner)
    learn, dst = _fastai_learner(method, rank)
    batches = []
    with learn.distrib_ctx(cpu=True), learn.no_bar(), learn.no_logging(): learn.fit(1, 0.05, cbs=[dst, _probe_cb(dst, batches)])
    return dict(snaps=dst.engine._probed, batches=batches, final={k: v.clone() for k, v in learn.model.state_dict().items()}, n_updates=dst.n_updates)

def fastai_reference(method:str, batches:list)->dict:
    "One process, fastai, the global batches in the order the ranks saw them (rank 0's rows, then rank 1's, per step)"
    from fastsparse.data import TensorDL, ArrayDataset
    from fastai.data.core import DataLoaders
    learn, dst = _fastai_learner(method, 0)
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    dl = TensorDL(ArrayDataset(x, y), bs=len(batches[0][0]), shuffle=False, drop_last=True)
    learn.dls = DataLoaders(dl, learn.dls.valid)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 0.05, cbs=[dst, _probe_cb(dst, [])])
    return dict(snaps=dst.engine._probed, final={k: v.clone() for k, v in learn.model.state_dict().items()}, n_updates=dst.n_updates)

def _fastai_resume(rank:int, world:int, out:Path)->dict:
    "distrib_ctx, truly sparse RigL every 3 steps: 2 epochs straight, and 1 epoch + learn.save + a resumed fit(start_epoch=1), which starts on an update step (21)"
    from fastai.callback.core import Callback, CancelFitException
    class Stop(Callback):
        def after_epoch(self): raise CancelFitException()
    learn, dst = _fastai_learner('RigL', rank, out, every=3)
    with learn.distrib_ctx(cpu=True), learn.no_bar(), learn.no_logging(): learn.fit(2, 0.05, cbs=dst)
    full = ({k: v.clone() for k, v in learn.model.state_dict().items()}, dst.n_updates)
    learn, dst = _fastai_learner('RigL', rank, out, every=3)
    with learn.distrib_ctx(cpu=True), learn.no_bar(), learn.no_logging(): learn.fit(2, 0.05, cbs=[dst, Stop()])
    learn.save('ddp_ck', with_opt=True)  # rank 0 writes; `load` waits for every rank first
    sd, rng = dst.state_dict(), learn.dls.train.rng.getstate()
    learn, dst = _fastai_learner('RigL', rank, out, seed=5, every=3)  # other masks, weights and generator: the checkpoint's must win
    learn.create_opt(); learn.load('ddp_ck', with_opt=True); dst.load_state_dict(sd); learn.dls.train.rng.setstate(rng)
    with learn.distrib_ctx(cpu=True), learn.no_bar(), learn.no_logging(): learn.fit(2, 0.05, cbs=dst, start_epoch=1)
    return dict(full=full, resumed=({k: v.clone() for k, v in learn.model.state_dict().items()}, dst.n_updates))

SCENARIOS = {
    'wrapper-SET': lambda r, w, o: wrapper_run('SET', r, w),
    'wrapper-RigL': lambda r, w, o: wrapper_run('RigL', r, w),
    'wrapper-RigL-no-broadcast': lambda r, w, o: wrapper_run('RigL', r, w, broadcast_buffers=False),
    'wrapper-RigL-uneven': lambda r, w, o: wrapper_run('RigL', r, w, rows=UNEVEN, broadcast_buffers=False),
    'wrapper-SET-rank-seeds': lambda r, w, o: wrapper_run('SET', r, w, seed=100 + r),  # must be refused
    'resume-RigL': lambda r, w, o: _wrapper_resume('RigL', r, w),
    'resume-SET': lambda r, w, o: _wrapper_resume('SET', r, w),
    'resume-RigL-masked': lambda r, w, o: _wrapper_resume('RigL', r, w, kind='masked'),
    'resume-SNFS-masked': lambda r, w, o: _wrapper_resume('SNFS', r, w, kind='masked'),
    'fastai-SET': lambda r, w, o: _fastai('SET', r, w),
    'fastai-RigL': lambda r, w, o: _fastai('RigL', r, w),
    'fastai-resume-RigL': lambda r, w, o: _fastai_resume(r, w, o),
}

if __name__ == '__main__':
    out = Path(sys.argv[1])
    names = sys.argv[2:] or list(SCENARIOS)
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    for name in names:
        try: res = dict(ok=True, **SCENARIOS[name](rank, world, out))
        except Exception as e: res = dict(ok=False, error=f"{type(e).__name__}: {e}")
        dist.barrier()
        buf = io.BytesIO(); torch.save(res, buf); (out/f'{name}_{rank}.pt').write_bytes(buf.getvalue())
    # All work is done and written. torch's gloo teardown at interpreter exit sometimes aborts the process afterwards (see
    # fastai_distrib_script.py): leave without running the C++ static destructors, after the process group is gone and the streams are flushed.
    dist.destroy_process_group()
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)
