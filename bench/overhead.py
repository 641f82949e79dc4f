"Training overhead vs dense: dense, static-mask and RigL (update every 25 steps) rounds alternate in one process; prints the median per-round time ratio to dense"
import sys, time, statistics
from functools import partial
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from common import parser, setup, sync, machine, median, build
from fastai.learner import Learner
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.optimizer import SGD
from fastai.losses import CrossEntropyLossFlat
from fastsparse import sparsify_model, erdos_renyi_sparsity, DynamicSparseTrainingCallback, RigL_presets
from fastsparse.data import ArrayDataset

class RoundsRigL(DynamicSparseTrainingCallback):
    "RigL whose step count runs on across the benchmark's rounds (one `fit` each): an update exactly every 25 steps, drop fraction 0.3 throughout"
    def _setup_schedule(self):
        step = self.schedule.step
        super()._setup_schedule()
        self.schedule.start(float('inf'), step=step)  # never stop updating; the drop fraction stays at its initial 0.3

def learner(kind, model, dev, bs, steps, seed=0, compile=False):
    torch.manual_seed(seed)
    net, shape = build(model, dev)
    x = torch.randn(bs * steps, *shape, device=dev); y = torch.randint(0, 10, (bs * steps,), device=dev)
    dl = DataLoader(ArrayDataset(x, y), bs=bs, shuffle=False, device=dev)
    vdl = DataLoader(ArrayDataset(x[:bs], y[:bs]), bs=bs, device=dev)
    cbs = []
    if kind != 'dense': sparsify_model(net, 0.9, sparse_f=erdos_renyi_sparsity)
    if kind == 'rigl': cbs = [RoundsRigL(**RigL_presets, batches_per_update=25, seed=0)]
    learn = Learner(DataLoaders(dl, vdl, device=dev), net, loss_func=CrossEntropyLossFlat(), opt_func=partial(SGD, mom=0.9), cbs=cbs)
    learn.remove_cbs([c for c in learn.cbs if type(c).__name__ in ('ProgressCallback',)])
    if compile: learn.model = torch.compile(learn.model)
    return learn

def round_time(learn, dev):
    with learn.no_logging():
        sync(dev); t = time.perf_counter(); learn.fit(1, 0.01); sync(dev)
    return time.perf_counter() - t

if __name__ == '__main__':
    p = parser(__doc__)
    p.add_argument('--model', default=None, choices=['mlp', 'lenet5', 'resnet18'])
    p.add_argument('--rounds', type=int, default=None, help="default: 60 (mlp), 40 (lenet5, resnet18)"); p.add_argument('--steps', type=int, default=None, help="steps per round (a multiple of 25; default: 50 (mlp), 25 (lenet5, resnet18))")
    p.add_argument('--compile', action='store_true', help="torch.compile the model in all three variants")
    args = p.parse_args(); dev = setup(args)
    model = args.model or ('resnet18' if dev.type == 'cuda' else 'mlp')
    bs = 256 if model == 'resnet18' else 128
    small = model == 'mlp'
    rounds, steps = (2, 25) if args.quick else (args.rounds or (60 if small else 40), args.steps or (50 if small else 25))
    learners = {k: learner(k, model, dev, bs, steps, compile=args.compile) for k in ('dense', 'static', 'rigl')}
    for l in learners.values(): round_time(l, dev)  # warm-up
    times = {k: [] for k in learners}
    names = list(learners)
    for r in range(rounds):  # the order rotates every round, so no variant always runs first or last
        for k in names[r % 3:] + names[:r % 3]: times[k].append(round_time(learners[k], dev))
    d = median(times['dense'])
    def ratio(k):
        "Median and quartiles of the per-round ratios to dense (each round's variants ran back to back, so slow drifts of the machine cancel)"
        q = statistics.quantiles([t / td for t, td in zip(times[k], times['dense'])], n=4)
        return f"{q[1]:.3f}x ({q[0]:.3f}-{q[2]:.3f})"
    n_upd = next(c for c in learners['rigl'].cbs if isinstance(c, DynamicSparseTrainingCallback)).n_updates
    print(f"overhead {model}{' compiled' if args.compile else ''} bs {bs} on {machine(dev)}: dense step {1e3 * d / steps:.3f} ms; "
          f"static {ratio('static')}, RigL every 25 steps {ratio('rigl')} "
          f"(median and quartiles of per-round ratios over {rounds} rounds of {steps} steps, order rotating; {n_upd} RigL updates)")
