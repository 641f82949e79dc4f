"Gradient checkpointing (`torch.utils.checkpoint`, reentrant and not) around truly sparse transformer blocks: RigL records each forward once and grows the same positions, and training ends with the same values, as without it"
import pytest, torch
from torch import nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from fastsparse.core import sparsify_model, erdos_renyi_sparsity
from fastsparse.sparse_linear import truly_sparse, truly_sparse_layers
from fastsparse.wrapper import DynamicSparseTrainingOptimizerWrapper
from fastsparse.schedule import RigL_presets

class Block(nn.Module):
    "A pre-norm transformer block of linear layers: qkv, proj, a two-layer MLP with dropout"
    def __init__(self, d:int=16, heads:int=2, bias:bool=True):
        super().__init__()
        self.heads, self.norm1, self.norm2 = heads, nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=bias), nn.Linear(d, d, bias=bias)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d, bias=bias), nn.GELU(), nn.Dropout(0.1), nn.Linear(2 * d, d, bias=bias))

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))

class Net(nn.Module):
    "Embedding, two blocks (each run through `checkpoint(block, x, use_reentrant=ckpt)` unless `ckpt` is None), mean pooling, head"
    def __init__(self, d:int=16, bias:bool=True):
        super().__init__()
        self.embed, self.head = nn.Linear(8, d, bias=bias), nn.Linear(d, 3, bias=bias)
        self.blocks, self.ckpt = nn.ModuleList([Block(d, bias=bias), Block(d, bias=bias)]), None

    def forward(self, x):
        x = self.embed(x)
        for b in self.blocks: x = b(x) if self.ckpt is None else checkpoint(b, x, use_reentrant=self.ckpt)
        return self.head(x.mean(1))

@pytest.fixture(autouse=True)
def one_thread():
    "One thread: reproducible sums, and no oversubscription of the shared machine"
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

OPTS = dict(sgd=lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9), adamw=lambda ps: torch.optim.AdamW(ps, lr=1e-2))

def _train(ckpt, bias:bool, opt:str, accum:int, steps:int=24):
    "Train a truly sparse `Net` with RigL (updates every 4 steps), `accum` micro-batches per step; return the model, the wrapper, the positions after every step and the records before every step"
    torch.manual_seed(0)
    m = Net(bias=bias); sparsify_model(m, 0.8, sparse_f=erdos_renyi_sparsity, generator=torch.Generator().manual_seed(0))
    truly_sparse(m); m.ckpt = ckpt
    so = DynamicSparseTrainingOptimizerWrapper(m, OPTS[opt](m.parameters()), batches_per_update=4, total_steps=steps,
                                               seed=0, **RigL_presets)
    g, hist, recs = torch.Generator().manual_seed(1), [], []
    for t in range(steps):
        for _ in range(accum):
            x, y = torch.randn(8, 6, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
            F.cross_entropy(m(x), y).backward()
        recs.append([len(l.__dict__.get('_rec', ())) for l in truly_sparse_layers(m)])  # (input, output gradient) pairs kept for the update
        so.step(); so.zero_grad()
        hist.append([l.flat().clone() for l in truly_sparse_layers(m)])
    return m, so, hist, recs

@pytest.mark.parametrize('bias,opt,accum', [(True, 'sgd', 1), (False, 'adamw', 2)])
def test_checkpoint_same_rigl_updates(bias, opt, accum):
    "With `checkpoint(block, x, use_reentrant=False/True)`: the same records, the same positions after every step and the same values as without"
    ref, so0, hist0, recs0 = _train(None, bias, opt, accum)
    ls0 = truly_sparse_layers(ref)
    assert len(ls0) == 10 and so0.n_updates == 4  # embed, head and 4 layers per block; updates every 4 steps before 75 % of 24
    assert all(not torch.equal(a, b) for a, b in zip(hist0[0], hist0[-1]))  # every layer's topology changed
    assert {r for rs in recs0 for r in rs} == {0, accum}  # each forward of an update step kept once, nothing on other steps
    for reentrant in (False, True):
        m, so, hist, recs = _train(reentrant, bias, opt, accum)
        assert so.n_updates == so0.n_updates
        assert recs == recs0, f"use_reentrant={reentrant}: records differ (a recomputed forward recorded again, or one was lost)"
        for t, (a, b) in enumerate(zip(hist, hist0)):
            for x, y in zip(a, b): assert torch.equal(x, y), f"use_reentrant={reentrant}: positions differ after step {t}"
        # bit-identical, except that reentrant checkpointing returns a block's input gradient in the layout of its input (autograd's
        # AccumulateGrad layout contract, and a TrulySparseLinear's output is feature-major): the bias gradient, a sum over the batch,
        # then adds in another order (1 ulp). SGD keeps that at rounding level; Adam divides tiny gradients by their tiny RMS and can
        # turn 1 ulp into visible differences, so the biased model trains with SGD and the bias-free one, bit-identical, with AdamW
        tol = dict(rtol=1e-5, atol=1e-7) if reentrant and bias else dict(rtol=0, atol=0)
        for l, l0 in zip(truly_sparse_layers(m), ls0):
            torch.testing.assert_close(l.values, l0.values, **tol, msg=lambda s: f'use_reentrant={reentrant}: {s}')
            if bias: torch.testing.assert_close(l.bias, l0.bias, **tol)
            assert not l.record and not l.__dict__.get('_rec')  # nothing kept after the last update
