"Sparse models inside fastai: masks held through training, Learner.save/load, export/load_learner, the seed README's save/reload demo"
import warnings
import torch
from torch import nn
from functools import partial
from fastai.learner import Learner, save_model, load_model, load_learner
from fastai.callback.core import Callback
from fastai.callback.schedule import fit_one_cycle, fit_flat_cos
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
from fastai.optimizer import Adam, SGD, OptimWrapper
from fastai.vision.data import ImageDataLoaders
from fastai.vision.learner import cnn_learner
from torchvision.models import resnet18
import fastsparse as sparse
from fastsparse import *

class CheckMasked(Callback):
    "Assert that masked weights are exactly zero after every optimizer step and before every forward"
    order = 100
    def __init__(self): self.n = 0
    def _check(self):
        for w, m in zip(*weights_and_masks(self.learn.model)): assert not (w[~m] != 0).any()
    def before_batch(self): self._check()
    def after_step(self): self._check(); self.n += 1

def _digits_learner(opt_func=Adam, **kw):
    from fastsparse.data import digits_dls
    from fastsparse.experiment import lenet300
    torch.manual_seed(0)
    return Learner(digits_dls(bs=64, seed=0), lenet300((64,)), loss_func=CrossEntropyLossFlat(), metrics=accuracy, opt_func=opt_func, **kw)

def test_masks_hold_through_fastai_training_all_optimizers():
    for opt_func in (Adam, partial(SGD, mom=0.9), partial(OptimWrapper, opt=torch.optim.AdamW)):
        learn = _digits_learner(opt_func, wd=0.1)
        sparsify_model(learn, 0.9, sparse_f=erdos_renyi_sparsity)
        cb = CheckMasked()
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(2, 1e-2, cbs=cb)
        assert cb.n == 2 * len(learn.dls.train)

def test_learner_save_load_and_export_roundtrip(tmp_path):
    learn = _digits_learner(path=tmp_path)
    sparsify_model(learn.model, 0.9, sparse_f=erdos_renyi_sparsity)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2)
    learn.save('sparse', with_opt=True)
    ref = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn2 = _digits_learner(path=tmp_path)
    sparsify_model(learn2.model, 0.9, sparse_f=erdos_renyi_sparsity, generator=torch.Generator().manual_seed(123))
    assert not torch.equal(learn2.model[1].weight_mask, ref['1.weight_mask'])
    learn2.create_opt()
    learn2.load('sparse', with_opt=True)
    for k, v in learn2.model.state_dict().items(): assert torch.equal(v, ref[k]), k
    # fastai's save_model/load_model, as in the seed README
    save_model(tmp_path/'m.pth', learn.model, learn.opt)
    learn3 = _digits_learner(); sparsify_model(learn3.model, 0.9, sparse_f=erdos_renyi_sparsity)
    load_model(tmp_path/'m.pth', learn3.model, None, with_opt=False)
    for k, v in learn3.model.state_dict().items(): assert torch.equal(v, ref[k]), k
    # export -> load_learner keeps masks and enforcement
    learn.export(tmp_path/'export.pkl')
    learn4 = load_learner(tmp_path/'export.pkl', cpu=True)
    for k, v in learn4.model.state_dict().items(): assert torch.equal(v, ref[k]), k
    assert learn4.model._sparse_enforcer.model is learn4.model
    learn4.dls = learn.dls
    cb = CheckMasked()
    with learn4.no_bar(), learn4.no_logging(): learn4.fit(1, 1e-2, cbs=cb)
    assert cb.n > 0

def test_checkpoint_is_sparse_right_after_training(tmp_path):
    learn = _digits_learner(path=tmp_path, wd=0.5)
    sparsify_model(learn.model, 0.95)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2)
    sd = torch.load(learn.save('after', with_opt=False), weights_only=True)
    for k in ('1', '3', '5'):
        assert not (sd[f'{k}.weight'][~sd[f'{k}.weight_mask']] != 0).any()

def test_seed_readme_save_reload_demo(fmnist_folder, tmp_path, monkeypatch):
    "The seed README's Save/Reload demo (SNFS callback), on a small Fashion-MNIST image folder instead of MNIST_TINY"
    monkeypatch.chdir(tmp_path)
    path = fmnist_folder
    dls = ImageDataLoaders.from_folder(path, 'train', 'valid', bs=16, num_workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn = cnn_learner(dls, resnet18, metrics=accuracy, pretrained=False)
    sparse_hooks = sparsify_model(learn.model, model_sparsity=0.9, sparse_f=erdos_renyi_sparsity)
    dst_kwargs = {**SNFS_presets, **{'batches_per_update': 8}}
    cbs = DynamicSparseTrainingCallback(**dst_kwargs)
    with learn.no_bar(), learn.no_logging(): learn.fit_flat_cos(2, cbs=cbs)
    assert cbs.n_updates > 0
    save_model('sparse_tiny_mnist', learn.model, learn.opt)
    val = learn.validate()
    # "manually restart notebook": a new learner, re-sparsified with fresh random masks, then loaded
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn2 = cnn_learner(dls, resnet18, metrics=accuracy, pretrained=False)
        sparse_hooks2 = sparsify_model(learn2.model, model_sparsity=0.9, sparse_f=erdos_renyi_sparsity)
        load_model('sparse_tiny_mnist', learn2.model, learn2.opt)
    for (k, a), b in zip(learn.model.state_dict().items(), learn2.model.state_dict().values()): assert torch.equal(a, b), k
    val2 = learn2.validate()
    assert abs(val[0] - val2[0]) < 1e-5 and val[1] == val2[1]
    n = len(masked_params(learn2.model))
    sparse_hooks2.remove(); sparse_hooks.remove()
    assert n > 15 and len(masked_params(learn2.model)) == n  # masks stay after remove()
