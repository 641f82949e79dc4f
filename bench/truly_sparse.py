"Truly sparse MLP training steps (SGD momentum, SET update every 100 steps included) against dense and masked-dense, in a plain PyTorch loop and in fastai's Learner, plus the cost of one SET and one block-wise RigL update"
import sys, copy, gc, resource, statistics, time
from functools import partial
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from common import parser, setup, timeit, machine, median, sync
from fastsparse.core import sparsify_model
from fastsparse.sparse_linear import truly_sparse, truly_sparse_layers, update_truly_sparse, record_for_update

def mlp(h, dev): return nn.Sequential(nn.Linear(784, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 10)).to(dev)

def quartiles(xs):
    q = torch.tensor(xs).quantile(torch.tensor([0.25, 0.5, 0.75])).tolist()
    return f"{q[1]:.2f}x (quartiles {q[0]:.2f}-{q[2]:.2f})"

def overall(num, den, n_num, n_den):
    "Ratio of the mean step times over all rounds (`num` rounds of `n_num` steps, `den` rounds of `n_den`)"
    return (sum(num) / n_num) / (sum(den) / n_den)

class Trainer:
    "Training steps of one model with SGD momentum on one batch; SET every `every` steps when `update`"
    def __init__(self, model, x, y, update=False, every=100):
        self.model, self.x, self.y, self.update, self.every, self.t = model, x, y, update, every, 0
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        self.gen = torch.Generator().manual_seed(0)
    def step(self):
        self.opt.zero_grad(); nn.functional.cross_entropy(self.model(self.x), self.y).backward(); self.opt.step()
        self.t += 1
        if self.update and self.t % self.every == 0: update_truly_sparse(self.model, 0.3, 'random', self.opt, self.gen)

def compare(h, sparsity, dev, rounds, bs, dense_steps, sparse_steps):
    "Per-round ratios (dense / truly sparse, masked / truly sparse) of mean step time, rounds alternating"
    torch.manual_seed(0)
    x, y = torch.randn(bs, 784, device=dev), torch.randint(0, 10, (bs,), device=dev)
    dense = mlp(h, dev); masked = mlp(h, dev); sparsify_model(masked, sparsity)
    ts = truly_sparse(copy.deepcopy(masked))
    tr = dict(dense=Trainer(dense, x, y), masked=Trainer(masked, x, y), sparse=Trainer(ts, x, y, update=True))
    for t in tr.values(): t.step()
    res = dict(dense=[], masked=[], sparse=[])
    for _ in range(rounds):
        for k, n in [('dense', dense_steps), ('masked', dense_steps), ('sparse', sparse_steps)]:
            res[k].append(timeit(tr[k].step, dev, n))
    r_d = [d / s for d, s in zip(res['dense'], res['sparse'])]; r_m = [m / s for m, s in zip(res['masked'], res['sparse'])]
    tot = sum(res['dense']) / sum(res['sparse'])
    print(f"  plain loop 784-{h}-{h}-10 at {sparsity:.0%}: dense {1e3 * median(res['dense']):.1f} ms, masked {1e3 * median(res['masked']):.1f} ms, "
          f"truly sparse {1e3 * median(res['sparse']):.2f} ms per step (SET every 100 steps, {tr['sparse'].t} steps, "
          f"{tr['sparse'].t // 100} updates); truly sparse faster than dense {quartiles(r_d)} per round, {tot:.2f}x over all rounds; "
          f"than masked {quartiles(r_m)}; {rounds} rounds", flush=True)
    return median(r_d)

def learner(model, bs, steps, dev, cbs=(), itemwise=False):
    "A fastai `Learner` training `model` with SGD momentum on `steps` random batches of `bs` (no progress bar, no logging); batches by `TensorDL` (as `tensor_dls` makes), or fastai's item-by-item `DataLoader`"
    from fastai.learner import Learner
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.optimizer import SGD
    from fastai.losses import CrossEntropyLossFlat
    from fastsparse.data import ArrayDataset, TensorDL
    x, y = torch.randn(bs * steps, 784, device=dev), torch.randint(0, 10, (bs * steps,), device=dev)
    dl = DataLoader if itemwise else TensorDL
    dls = DataLoaders(dl(ArrayDataset(x, y), bs=bs, shuffle=False, device=dev), dl(ArrayDataset(x[:bs], y[:bs]), bs=bs, device=dev), device=dev)
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), opt_func=partial(SGD, mom=0.9), cbs=list(cbs))
    learn.remove_cbs([c for c in learn.cbs if type(c).__name__ == 'ProgressCallback'])
    return learn

def fastai_round(learn, dev):
    "Seconds of the training batches of one `fit(1)` (from `before_train` to `after_train`: every step with its callbacks, not validation)"
    from fastai.callback.core import Callback
    class _Time(Callback):
        def before_train(self): sync(dev); self.t = time.perf_counter()
        def after_train(self): sync(dev); self.dt = time.perf_counter() - self.t
    cb = _Time()
    with learn.no_logging(): learn.fit(1, 1e-3, cbs=[cb])
    return cb.dt

def compare_fastai(h, sparsity, dev, rounds, bs, dense_steps, sparse_steps, itemwise=False):
    "Per-round ratios dense / truly sparse of the mean fastai training step (SET callback every 100 steps), rounds alternating"
    from fastsparse.callbacks import DynamicSparseTrainingCallback
    from fastsparse.schedule import SET_presets
    class RoundsSET(DynamicSparseTrainingCallback):
        "SET whose step count runs on across rounds (one `fit` each): an update exactly every 100 steps, drop fraction 0.3 throughout"
        def _setup_schedule(self):
            step = self.schedule.step
            super()._setup_schedule()
            self.schedule.start(float('inf'), step=step)
    torch.manual_seed(0)
    ts = mlp(h, dev); sparsify_model(ts, sparsity); truly_sparse(ts)  # before the Learner makes its optimizer
    cb = RoundsSET(**SET_presets, batches_per_update=100, seed=0)
    lrn = dict(dense=learner(mlp(h, dev), bs, dense_steps, dev, itemwise=itemwise), sparse=learner(ts, bs, sparse_steps, dev, [cb], itemwise))
    for l in lrn.values(): fastai_round(l, dev)  # warm-up
    res = dict(dense=[], sparse=[])
    for r in range(rounds):
        for k in (['dense', 'sparse'] if r % 2 == 0 else ['sparse', 'dense']): res[k].append(fastai_round(lrn[k], dev))
    r_d = [d / dense_steps / (s / sparse_steps) for d, s in zip(res['dense'], res['sparse'])]
    tot = overall(res['dense'], res['sparse'], dense_steps, sparse_steps)
    print(f"  fastai Learner ({'fastai DataLoader, item by item' if itemwise else 'TensorDL'}) 784-{h}-{h}-10 at {sparsity:.0%}: dense {1e3 * median(res['dense']) / dense_steps:.1f} ms, "
          f"truly sparse {1e3 * median(res['sparse']) / sparse_steps:.2f} ms per step (SET callback every 100 steps, {cb.n_updates} updates); "
          f"truly sparse faster than dense {quartiles(r_d)} per round, {tot:.2f}x over all rounds; {rounds} rounds", flush=True)
    return median(r_d)

def peak_extra(f)->int:
    "Peak bytes allocated while `f` runs above what was allocated when it started, from the PyTorch profiler's CPU memory events"
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p: f()
    cur = peak = 0
    for e in sorted(p.events(), key=lambda e: (e.time_range.start, e.time_range.end)):  # allocations and frees in order; each op counts what it keeps
        cur += e.cpu_memory_usage if e.name == '[memory]' else e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak

def updates(h, sparsity, dev, reps, bs, block_size):
    "One SET update against 10 sparse steps and one block-wise RigL update against 2 dense steps, in alternating rounds; the RigL update's peak extra memory"
    torch.manual_seed(0)
    x, y = torch.randn(bs, 784, device=dev), torch.randint(0, 10, (bs,), device=dev)
    m = mlp(h, dev); sparsify_model(m, sparsity); truly_sparse(m)
    t = Trainer(m, x, y); t.step()
    d = Trainer(mlp(h, dev), x, y); d.step()
    r_set, r_rigl, s_t, set_t, d_t, rigl_t = [], [], [], [], [], []
    def rigl():
        record_for_update(m); t.opt.zero_grad(); nn.functional.cross_entropy(m(x), y).backward()
        return timeit(lambda: update_truly_sparse(m, 0.3, 'gradient', t.opt, block_size=block_size), dev)
    for _ in range(reps):
        s_t.append(timeit(t.step, dev, 10)); set_t.append(timeit(lambda: update_truly_sparse(m, 0.3, 'random', t.opt, t.gen), dev))
        r_set.append(set_t[-1] / s_t[-1])
        d_t.append(timeit(d.step, dev, 2)); rigl_t.append(rigl()); r_rigl.append(rigl_t[-1] / d_t[-1])
    record_for_update(m); t.opt.zero_grad(); nn.functional.cross_entropy(m(x), y).backward()
    measured = peak_extra(lambda: update_truly_sparse(m, 0.3, 'gradient', t.opt, block_size=block_size))
    layer = truly_sparse_layers(m)[1]
    peak = min(max(1, block_size // layer.in_features), layer.out_features) * layer.in_features * 4  # one block of the dense gradient (fp32)
    print(f"  784-{h}-{h}-10 at {sparsity:.0%}: one SET update {1e3 * median(set_t):.1f} ms = {quartiles(r_set)} sparse steps "
          f"({1e3 * median(s_t):.2f} ms); one RigL update (block {block_size:,} elements) {1e3 * median(rigl_t):.1f} ms = {quartiles(r_rigl)} dense steps "
          f"({1e3 * median(d_t):.1f} ms); {reps} alternating rounds; RigL's peak extra memory, measured: {measured / 2**20:.1f} MiB above what the update started with "
          f"(PyTorch's CPU allocator events), of which its largest dense-gradient block {peak / 2**20:.1f} MiB; a dense gradient of the layer: {layer.numel * 4 / 2**20:.1f} MiB", flush=True)
    del d; gc.collect()
    return median(r_set), median(r_rigl)

if __name__ == '__main__':
    p = parser(__doc__); p.add_argument('--rounds', type=int, default=7); p.add_argument('--bs', type=int, default=128)
    p.add_argument('--block-size', type=int, default=2**22); p.add_argument('--reps', type=int, default=9)
    p.add_argument('--skip', default='', help="comma-separated parts to skip: plain, fastai, updates")
    p.add_argument('--itemwise', action='store_true', help="fastai Learner mode loads batches item by item (fastai's DataLoader) instead of with TensorDL")
    args = p.parse_args(); dev = setup(args); skip = set(args.skip.split(','))
    print(f"truly sparse training, batch {args.bs}, on {machine(dev)}", flush=True)
    if args.quick: nets, rounds, reps = [(200, 0.97, 3, 3), (400, 0.99, 2, 3)], 2, 2
    else: nets, rounds, reps = [(1000, 0.97, 20, 100), (4000, 0.99, 3, 100), (10000, 0.99, 1, 100)], args.rounds, args.reps
    plain = [compare(h, s, dev, rounds, args.bs, nd, ns) for h, s, nd, ns in nets] if 'plain' not in skip else []
    fa = [compare_fastai(h, s, dev, rounds, args.bs, nd, ns, args.itemwise) for h, s, nd, ns in nets] if 'fastai' not in skip else []
    s, r = updates(400 if args.quick else 4000, 0.99, dev, reps, args.bs, args.block_size) if 'updates' not in skip else (float('nan'),) * 2
    print(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    fmt = lambda rs: ', '.join(f"{h}: {x:.1f}x" for (h, *_), x in zip(nets, rs))
    print(f"truly_sparse: faster than dense, plain loop {fmt(plain)}; fastai {fmt(fa)}; SET update {s:.2f} sparse steps, RigL update {r:.2f} dense steps")
