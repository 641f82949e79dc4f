"Code and checkpoints written for fastsparse 0.0.5 keep working: its public names by both import paths, its score-function style, its checkpoints"
import importlib, io, warnings
from functools import partial
import pytest, torch
import fastai.callback.progress  # Learner.no_bar
from torch import nn

# fastsparse 0.0.5's `fastsparse.core.__all__` (and so `from fastsparse import *`)
NAMES_005 = ['sparse_mask', 'sparse_mask_like', 'maybe_float', 'sparse_params', 'apply_masks', 'is_sparseable_module',
             'sparseable_modules', 'uniform_sparsity', 'first_layer_dense_uniform', 'erdos_renyi_sparsity',
             'sparsify_model', 'random_score', 'weight_magnitude', 'gradient_magnitude', 'gradient_momentum',
             'top_k_mask', 'DynamicSparseTrainingCallback', 'SET_presets', 'SNFS_presets', 'RigL_presets']

@pytest.mark.parametrize('name', NAMES_005)
def test_name_imports_from_both_paths(name):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        a = getattr(importlib.import_module('fastsparse.core'), name)
    b = getattr(importlib.import_module('fastsparse'), name)
    assert a is b

def test_star_imports():
    ns_core, ns_pkg = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        exec('from fastsparse.core import *', ns_core)
    exec('from fastsparse import *', ns_pkg)
    for name in NAMES_005: assert name in ns_core and name in ns_pkg, name

def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))

def _mask_before_forward(m, args):
    with torch.no_grad(): m.weight.mul_(m.weight_mask)

def _sparsify_005(model, s=0.8):
    "Sparsify as fastsparse 0.0.5 did: a bool `weight_mask` and a float tensor `weight_sparsity` buffer per layer, masks applied before each forward"
    from fastsparse.core import sparse_mask_like
    for m in model:
        if isinstance(m, nn.Linear):
            m.register_buffer('weight_mask', sparse_mask_like(m.weight, s))
            m.register_buffer('weight_sparsity', torch.tensor(s))
            _mask_before_forward(m, ())
            m.register_forward_pre_hook(_mask_before_forward)
    return model

def test_005_state_dict_loads_strict():
    from fastsparse import sparsify_model, weights_and_masks
    old = _sparsify_005(_model())
    buf = io.BytesIO(); torch.save(old.state_dict(), buf); buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    assert '0.weight_sparsity' in sd
    new = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))
    sparsify_model(new, 0.5)  # different masks and sparsity: the checkpoint's must win
    new.load_state_dict(sd)  # strict, the default
    for i in (0, 2):
        assert torch.equal(new[i].weight_mask, old[i].weight_mask) and torch.equal(new[i].weight, old[i].weight)
        assert abs(new[i].weight_sparsity - (1 - old[i].weight_mask.sum().item() / old[i].weight_mask.numel())) < 1e-12
    assert 'weight_sparsity' not in dict(new[0].named_buffers())

def test_005_learner_save_loads(tmp_path):
    from fastai.learner import Learner
    from fastai.optimizer import SGD
    from fastai.losses import CrossEntropyLossFlat
    from fastsparse import sparsify_model, sparse_params
    from fastsparse.data import digits_dls
    def learner(model): return Learner(digits_dls(bs=64, seed=0), model, loss_func=CrossEntropyLossFlat(), opt_func=partial(SGD, mom=0.9), path=tmp_path)
    old = learner(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)))
    _sparsify_005(old.model[1:])
    with old.no_bar(), old.no_logging(): old.fit(1, 0.01)
    old.save('old005')  # fastai's save_model: {'model': state dict with weight_sparsity buffers, 'opt': ...}
    new = learner(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)))
    sparsify_model(new.model, 0.9)
    new.load('old005')
    for a, b in ((old.model[1], new.model[1]), (old.model[3], new.model[3])):
        # 0.0.5 masked before each forward, so its checkpoint holds the last step's values at masked positions: they load as 0
        assert torch.equal(a.weight_mask, b.weight_mask) and torch.equal(a.weight * a.weight_mask, b.weight)
    assert new.opt is not None and len(new.opt.state) > 0  # the optimizer state loaded too
    for p, mask, s in sparse_params(new.model):  # 0.0.5's own check of per-layer sparsity
        assert abs(s - (1 - (p != 0).sum().item() / p.numel())) < 0.05

def test_005_style_scores_train():
    from fastsparse import sparsify_model, DynamicSparseTrainingOptimizerWrapper, weights_and_masks
    def random_score_005(p, **kwargs): return torch.rand_like(p)  # written like 0.0.5's own random_score
    def momentum_005(p, opt, **kwargs): return opt.state[p]['momentum_buffer'].abs()
    for grow in (random_score_005, momentum_005):
        model = _model(); sparsify_model(model, 0.8)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        so = DynamicSparseTrainingOptimizerWrapper(model, opt, batches_per_update=2, total_steps=12, keep_score_f=lambda p, **kw: p.abs(),
                                                   grow_score_f=grow, seed=0)
        b0 = so.engine.budgets()
        for _ in range(12):
            nn.functional.cross_entropy(model(torch.randn(8, 16)), torch.randint(0, 10, (8,))).backward(); so.step(); so.zero_grad()
        assert so.n_updates == 4 and so.engine.budgets() == b0

def test_005_style_score_in_callback():
    from fastai.learner import Learner
    from fastai.optimizer import SGD
    from fastai.losses import CrossEntropyLossFlat
    from fastsparse import sparsify_model, DynamicSparseTrainingCallback, SET_presets
    from fastsparse.data import digits_dls
    def random_score_005(p, **kwargs): return torch.rand_like(p)
    learn = Learner(digits_dls(bs=64, seed=0), nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
                    loss_func=CrossEntropyLossFlat(), opt_func=partial(SGD, mom=0.9))
    sparsify_model(learn.model, 0.8)
    dst = DynamicSparseTrainingCallback(**{**SET_presets, 'grow_score_f': random_score_005}, batches_per_update=4)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 0.05, cbs=dst)
    assert dst.n_updates > 0

def test_old_helpers():
    from fastsparse import top_k_mask, topk_mask, maybe_float, is_sparseable_module
    t = torch.randn(50)
    assert torch.equal(top_k_mask(t, 7), topk_mask(t, 7)) and top_k_mask(t, 7).sum() == 7
    assert maybe_float('x') == 'x' and maybe_float(torch.tensor(2.)) == 2.
    assert is_sparseable_module(nn.LSTM(2, 3)) and not is_sparseable_module(nn.LayerNorm(3))
