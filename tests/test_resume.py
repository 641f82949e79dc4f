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
