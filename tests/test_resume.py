"Exact resume: an interrupted fastai run, reloaded with Learner.load(with_opt=True) + the callback's state, ends bit-identical"
import io, random
from functools import partial
import pytest, torch
from torch import nn
from fastai.learner import Learner
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.schedule import fit_one_cycle
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import Adam, SGD
from fastsparse import *
from fastsparse.data import digits_dls

class StopAfter(Callback):
    order = 99
    def __init__(self, epoch): self.stop = epoch
    def after_epoch(self):
        if self.epoch == self.stop: raise CancelFitException()

def _setup(path, preset, mask_seed):
    torch.manual_seed(0)
    learn = Learner(digits_dls(bs=64, seed=0), nn.Sequential(nn.Linear(64, 200), nn.ReLU(), nn.Linear(200, 10)),
                    loss_func=CrossEntropyLossFlat(), opt_func=partial(SGD, mom=0.9), path=path)
    sparsify_model(learn, 0.9, sparse_f=erdos_renyi_sparsity, generator=torch.Generator().manual_seed(mask_seed))
    dst = DynamicSparseTrainingCallback(**preset, batches_per_update=7, seed=11)
    learn.add_cb(dst)
    return learn, dst

@pytest.mark.parametrize('preset', [SET_presets, RigL_presets, SNFS_presets], ids=['set', 'rigl', 'snfs'])
def test_fastai_resume_bit_identical(tmp_path, preset):
    n = 5
    full, dst_full = _setup(tmp_path, preset, 0)
    with full.no_bar(), full.no_logging(): full.fit_one_cycle(n, 0.05)

    half, dst_half = _setup(tmp_path, preset, 0)
    with half.no_bar(), half.no_logging(): half.fit_one_cycle(n, 0.05, cbs=StopAfter(1))
    half.save('ckpt', with_opt=True)
    buf = io.BytesIO(); torch.save(dst_half.state_dict(), buf); buf.seek(0)
    rng = half.dls.train.rng.getstate()

    res, dst_res = _setup(tmp_path, preset, 99)  # different initial masks: the checkpoint's must win
    res.create_opt()
    res.load('ckpt', with_opt=True)
    dst_res.load_state_dict(torch.load(buf, weights_only=True))
    res.dls.train.rng.setstate(rng)
    with res.no_bar(), res.no_logging(): res.fit_one_cycle(n, 0.05, start_epoch=2)

    assert dst_res.n_updates == dst_full.n_updates > 0 and dst_res.step == dst_full.step
    for (k, a), b in zip(full.model.state_dict().items(), res.model.state_dict().values()):
        assert torch.equal(a, b), k

# The resume matrix: every method (static, SET, SNFS, RigL) on masked and truly sparse layers, through the PyTorch wrapper and the fastai
# callback, from a checkpoint after `n` steps where step `n` (the next to run) is an update step, the step before one, or the step after one.
# Truly sparse RigL must record the forward of an update step (the dense gradient's factors): a resumed run must re-arm that.
# SNFS on truly sparse layers is refused by design (it grows by the momentum of inactive weights, which they do not keep).
@pytest.fixture(autouse=True)
def _one_thread():
    "Tiny models: one thread is as fast, and keeps these runs quick on a busy machine (threads that wait spin)"
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

METHODS = dict(static=None, set=SET_presets, snfs=SNFS_presets, rigl=RigL_presets)
CASES = [(m, k) for m in METHODS for k in ('masked', 'truly_sparse') if (m, k) != ('snfs', 'truly_sparse')]
EVERY, N_STEPS = 3, 15  # updates at steps 3, 6, 9 (stop at 75 %: before 11.25)
CHECKPOINTS = dict(update=6, before_update=5, after_update=7)  # steps done when saved: the next step updates / is the one before / follows one

def _data(n):
    g = torch.Generator().manual_seed(5)
    return [(torch.randn(16, 20, generator=g), torch.randint(0, 4, (16,), generator=g)) for _ in range(n)]

def _build(method, kind, seed):
    "Model, optimizer and wrapper (None for static); `seed` sets the masks, the weights and the wrapper's generator: a checkpoint's must win"
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    sparsify_model(model, 0.8, sparse_f=erdos_renyi_sparsity, generator=torch.Generator().manual_seed(seed))
    if kind == 'truly_sparse': truly_sparse(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    so = None if METHODS[method] is None else DynamicSparseTrainingOptimizerWrapper(
        model, opt, batches_per_update=EVERY, total_steps=N_STEPS, seed=seed, **METHODS[method])
    return model, opt, so

def _train(model, opt, so, batches):
    for x, y in batches:
        nn.functional.cross_entropy(model(x), y).backward()
        (so or opt).step(); (so or opt).zero_grad()

def _save(model, opt, so)->bytes:
    buf = io.BytesIO()
    torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), so=so.state_dict() if so else None), buf)
    return buf.getvalue()

def _assert_same(a, b):
    (ma, oa, sa), (mb, ob, sb) = a, b
    for (k, x), (k2, y) in zip(ma.state_dict().items(), mb.state_dict().items()): assert k == k2 and torch.equal(x, y), k
    for x, y in zip(oa.state_dict()['state'].values(), ob.state_dict()['state'].values()): assert torch.equal(x['momentum_buffer'], y['momentum_buffer'])
    if sa: assert (sa.n_step, sa.n_updates, sa.schedule.history) == (sb.n_step, sb.n_updates, sb.schedule.history) and sa.n_updates == 3

@pytest.mark.parametrize('method,kind', CASES, ids=[f'{m}-{k}' for m, k in CASES])
def test_wrapper_resume_matrix(method, kind):
    "Model, optimizer and wrapper saved after `n` steps, loaded into a model built with other masks and seeds: the run ends bit-identical"
    data = _data(N_STEPS)
    full, ckpts = _build(method, kind, 0), {}
    for t, b in enumerate(data):
        if t in CHECKPOINTS.values(): ckpts[t] = _save(*full)
        _train(*full, [b])
    for name, n in CHECKPOINTS.items():
        res = _build(method, kind, 99)
        sd = torch.load(io.BytesIO(ckpts[n]), weights_only=True)
        res[0].load_state_dict(sd['model']); res[1].load_state_dict(sd['opt'])
        if res[2]: res[2].load_state_dict(sd['so'])
        _train(*res, data[n:])  # the data order is the caller's to restore: here batch `t` is fixed
        _assert_same(full, res)

def test_truly_sparse_snfs_refused():
    with pytest.raises(ValueError, match='SNFS'): _build('snfs', 'truly_sparse', 0)

class _Checkpoints(Callback):
    "Save the learner (with its optimizer), the callback's state and the shuffle's random state after every epoch, as a user's checkpoint would"
    order = 99
    def __init__(self, dst): self.dst, self.saved = dst, {}
    def after_epoch(self):
        self.learn.save(f'ck{self.epoch}', with_opt=True)
        self.saved[self.epoch] = (self.dst.state_dict() if self.dst else None, self.dls.train.rng.getstate())

def _learner(path, method, kind, seed):
    "digits, batches of 96: 14 optimizer steps per epoch; with an update every 3 steps, resuming at epochs 1, 2, 3 starts on the step before an update (14), the one after an update (28) and an update step (42)"
    torch.manual_seed(seed)
    learn = Learner(digits_dls(bs=96, seed=0), nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 10)),
                    loss_func=CrossEntropyLossFlat(), opt_func=partial(SGD, mom=0.9), path=path)
    sparsify_model(learn, 0.9, sparse_f=erdos_renyi_sparsity, generator=torch.Generator().manual_seed(seed))
    if kind == 'truly_sparse': truly_sparse(learn)
    dst = None if METHODS[method] is None else DynamicSparseTrainingCallback(**{**METHODS[method], 'stop_pct': 0.9}, batches_per_update=3, seed=seed)
    if dst: learn.add_cb(dst)
    return learn, dst

@pytest.mark.parametrize('method,kind', CASES, ids=[f'{m}-{k}' for m, k in CASES])
def test_fastai_resume_matrix(tmp_path, method, kind):
    "The README recipe (learn.save(with_opt=True), the callback's state, fit_one_cycle(start_epoch=k)) from three epoch ends: bit-identical"
    n = 4
    full, dst = _learner(tmp_path, method, kind, 0)
    ck = _Checkpoints(dst)
    with full.no_bar(), full.no_logging(): full.fit_one_cycle(n, 0.05, cbs=ck)
    assert len(full.dls.train) == 14 and (dst is None or dst.n_updates == 16)  # steps 3, 6, ..., 48 (< 90 % of 56)
    for e in (0, 1, 2):  # resumed at steps 14, 28, 42: the step before an update, the one after, an update step
        res, dst_res = _learner(tmp_path, method, kind, 99)
        res.create_opt()
        res.load(f'ck{e}', with_opt=True)
        sd, rng = ck.saved[e]
        buf = io.BytesIO(); torch.save(sd, buf); buf.seek(0)
        if dst_res: dst_res.load_state_dict(torch.load(buf, weights_only=True))
        res.dls.train.rng.setstate(rng)
        with res.no_bar(), res.no_logging(): res.fit_one_cycle(n, 0.05, start_epoch=e + 1)
        if dst: assert (dst_res.step, dst_res.n_updates, dst_res.history) == (dst.step, dst.n_updates, dst.history)
        for (k, a), b in zip(full.model.state_dict().items(), res.model.state_dict().values()): assert torch.equal(a, b), (e, k)
        for a, b in zip(full.opt.state_dict()['state'], res.opt.state_dict()['state']):
            assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor)), e
