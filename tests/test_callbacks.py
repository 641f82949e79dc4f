"DynamicSparseTrainingCallback and the drop/grow engine: invariants 1-5 of ALGORITHMS.md, property-based, and the seed README demo"
import math, warnings
from functools import partial
import torch
from torch import nn
from hypothesis import given, settings, strategies as st, HealthCheck
from fastai.learner import Learner
from fastai.callback.core import Callback
from fastai.callback.schedule import fit_one_cycle, fit_flat_cos
from fastai.callback.training import GradientAccumulation, GradientClip
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy, error_rate
from fastai.optimizer import SGD, Adam, OptimWrapper
from fastai.vision.data import ImageDataLoaders
from fastai.vision.learner import cnn_learner
from torchvision.models import resnet18, resnet34
import fastsparse as sparse
from fastsparse import *
from fastsparse.engine import opt_state
from fastsparse.data import digits_dls

OPTS = dict(
    fastai_sgd=partial(SGD, mom=0.9),
    fastai_adam=Adam,
    torch_sgd=partial(OptimWrapper, opt=partial(torch.optim.SGD, momentum=0.9)),
    torch_adamw=partial(OptimWrapper, opt=torch.optim.AdamW),
)
METHODS = dict(set=SET_presets, snfs=SNFS_presets, rigl=RigL_presets)
cfg = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))

class Invariants(Callback):
    "At every batch: masked weights are 0 and layer budgets (model total under redistribution) are exact"
    order = 30
    def __init__(self, redistribute): self.redistribute, self.n = redistribute, 0
    def before_fit(self): self.budgets = [int(m.sum()) for m in weights_and_masks(self.learn.model)[1]]
    def _check(self):
        ws, ms = weights_and_masks(self.learn.model)
        counts = [int(m.sum()) for m in ms]
        if self.redistribute: assert sum(counts) == sum(self.budgets)
        else: assert counts == self.budgets
        for w, m in zip(ws, ms): assert not (w[~m] != 0).any()
    def before_batch(self): self._check()
    def after_pred(self):  # at the forward pass
        self._check()
    def after_step(self): self._check(); self.n += 1

class StateAudit(Callback):
    "Around each topology update: grown weights and their optimizer state are 0, kept weights' state unchanged, sets disjoint"
    order = 19  # just before the DST callback's before_step
    def __init__(self): self.audits = 0
    def before_step(self):
        self.pre = [(m.clone(), {k: v.clone() for k, v in opt_state(self.learn.opt, w).items() if isinstance(v, torch.Tensor) and v.shape == w.shape})
                    for w, m in zip(*weights_and_masks(self.learn.model))]
        self.n_upd = self.learn.dynamic_sparse_training.n_updates
    def after_step(self):
        dst = self.learn.dynamic_sparse_training
        if dst.n_updates == self.n_upd: return
        self.audits += 1
        skipped = dst.skip_step_on_update
        for (w, m), (m0, st0) in zip(zip(*weights_and_masks(self.learn.model)), self.pre):
            grown, dropped, kept = m & ~m0, m0 & ~m, m & m0
            assert not (grown & dropped).any()
            assert int(grown.sum()) == int(dropped.sum()) or dst.redistribute_f is not None
            if skipped:  # no optimizer step after the update: grown weights and state still exactly 0, kept state untouched
                assert not (w[grown] != 0).any()
                for k, v in opt_state(self.learn.opt, w).items():
                    if k in st0:
                        assert not (v[grown] != 0).any(), k
                        assert torch.equal(v[kept], st0[k][kept]), k

def _learner(opt, bs=64, seed=0, widths=(64, 300, 100, 10)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]): layers += [nn.Linear(a, b), nn.ReLU()]
    return Learner(digits_dls(bs=bs, seed=seed), nn.Sequential(*layers[:-1]), loss_func=CrossEntropyLossFlat(), opt_func=OPTS[opt])

@cfg
@given(st.sampled_from(list(OPTS)), st.sampled_from(list(METHODS)), st.floats(0.5, 0.98), st.integers(1, 6),
       st.lists(st.integers(8, 120), min_size=1, max_size=3), st.booleans())
def test_invariants_through_training(opt, method, s, every, hidden, erk):
    learn = _learner(opt, widths=(64, *hidden, 10))
    sparsify_model(learn, s, sparse_f=erdos_renyi_sparsity if erk else uniform_sparsity)
    if not weights_and_masks(learn.model)[0]: return  # ERK made every layer dense
    dst = DynamicSparseTrainingCallback(**METHODS[method], batches_per_update=every, seed=0)
    inv, audit = Invariants(METHODS[method].get('redistribute_f') is not None), StateAudit()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2, cbs=[dst, inv, audit])
    assert inv.n == len(learn.dls.train)
    assert dst.n_updates == len([t for t in range(1, dst.step) if t % every == 0 and t < dst.end_step])
    if dst.n_updates and method == 'rigl': assert audit.audits == dst.n_updates

@settings(max_examples=8, deadline=None)
@given(st.sampled_from(['set', 'rigl', 'snfs']), st.lists(st.tuples(st.integers(2, 60), st.integers(2, 60)), min_size=1, max_size=4),
       st.floats(0.3, 0.99), st.integers(0, 1000))
def test_engine_1000_updates_no_drift(method, shapes, s, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(*[nn.Linear(i, o) for o, i in shapes])
    sparsify_model(model, s)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for p in model.parameters(): p.grad = torch.randn_like(p)
    opt.step()
    p = METHODS[method]
    eng = DropGrowEngine(model, p['keep_score_f'], p['grow_score_f'], p.get('redistribute_f'), seed=seed)
    b0 = eng.budgets()
    for i in range(1000):
        for q in model.parameters(): q.grad = torch.randn_like(q)
        eng.update(0.3 * (1 + math.cos(math.pi * i / 1000)) / 2, opt)
    b = eng.budgets()
    if p.get('redistribute_f'): assert sum(b) == sum(b0)
    else: assert b == b0

def test_grow_never_picks_active_when_scores_are_zero():
    "Zero grow scores everywhere (e.g. a dead layer): growth still fills exactly k inactive slots"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(50, 40)); sparsify_model(model, 0.9)
    eng = DropGrowEngine(model, grow_score_f=lambda p, o: torch.zeros_like(p), seed=0)
    b0 = eng.budgets()
    m0 = model[0].weight_mask.clone()
    res = eng.update(0.5)
    assert eng.budgets() == b0 and res['grown'] == res['dropped'] == [100]
    assert int((model[0].weight_mask & ~m0).sum()) == 100

def test_snfs_without_momentum_raises_clear_error():
    learn = _learner('fastai_sgd')
    learn.opt_func = partial(SGD, mom=0.)
    sparsify_model(learn, 0.9)
    dst = DynamicSparseTrainingCallback(**SNFS_presets, batches_per_update=2)
    try:
        with learn.no_bar(), learn.no_logging(): learn.fit(1, cbs=dst)
    except ValueError as e: assert 'momentum' in str(e)
    else: raise AssertionError('expected a ValueError about momentum')

def test_frozen_layers_and_gradient_clip_fine_tune():
    learn = _learner('fastai_adam')
    learn.sparsify(0.9, 'rigl', batches_per_update=3, seed=0)
    learn.model[0].weight.requires_grad_(False)  # a frozen layer: grad is None
    m0 = learn.model[0].weight_mask.clone()
    inv = Invariants(False)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2, cbs=[GradientClip(1.), inv])
    assert torch.equal(learn.model[0].weight_mask, m0) and learn.dynamic_sparse_training.n_updates > 0

def test_seed_readme_fastai_demo(fmnist_folder):
    "The seed README's fastai demo as written (cnn_learner + resnet34, SNFS_presets, batches_per_update), on a small Fashion-MNIST folder"
    path = fmnist_folder
    dls = ImageDataLoaders.from_folder(path, 'train', 'valid', bs=16, num_workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn = cnn_learner(dls, resnet34, metrics=error_rate, pretrained=False)
    sparse_hooks = sparse.sparsify_model(learn.model, model_sparsity=0.99, sparse_f=sparse.erdos_renyi_sparsity)
    masks0 = [m.clone() for m in sparse.weights_and_masks(learn.model)[1]]
    cbs = [sparse.DynamicSparseTrainingCallback(**sparse.SNFS_presets, batches_per_update=2)]
    inv = Invariants(True)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, cbs=cbs + [inv])
    sparse_hooks.remove()
    assert cbs[0].n_updates > 0
    assert any(not torch.equal(a, b) for a, b in zip(masks0, sparse.weights_and_masks(learn.model)[1]))

def test_fine_tune_frozen_then_unfrozen(fmnist_folder):
    "fine_tune: frozen-body epoch (grad None for the body) then unfrozen epochs; masks exact throughout, body masks only change once unfrozen"
    dls = ImageDataLoaders.from_folder(fmnist_folder, 'train', 'valid', bs=16, num_workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn = cnn_learner(dls, resnet18, metrics=accuracy, pretrained=False)
    learn.sparsify(0.9, 'rigl', sparse_f=erdos_renyi_sparsity, batches_per_update=2, seed=0)
    body = learn.model[0][0]
    class BodySpy(Callback):
        order = 31
        def before_fit(self): self.mask0, self.frozen = body.weight_mask.clone(), not body.weight.requires_grad
        def after_fit(self): self.changed = not torch.equal(body.weight_mask, self.mask0); self.log.append((self.frozen, self.changed))
    spy = BodySpy(); spy.log = []
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(2, freeze_epochs=1, cbs=[Invariants(False), spy])
    dst = learn.dynamic_sparse_training
    assert dst.n_updates > 0
    assert spy.log[0] == (True, False)   # frozen phase: body masks untouched
    assert spy.log[-1][0] is False        # unfrozen phase trained the body
