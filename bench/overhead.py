"Training overhead vs dense: dense, static-mask and RigL (update every 25 steps) rounds alternate in one process; prints median time ratios"
import sys, time
from functools import partial
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from common import parser, setup, sync, machine, median
from fastai.learner import Learner
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.optimizer import SGD
from fastai.losses import CrossEntropyLossFlat
from fastsparse import sparsify_model, erdos_renyi_sparsity, DynamicSparseTrainingCallback, RigL_presets
from fastsparse.data import ArrayDataset

def build(model, dev):
    if model == 'mlp': return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)).to(dev), (1, 28, 28)
    if model == 'lenet5':
        return nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10)).to(dev), (1, 28, 28)
    from torchvision.models import resnet18
    return resnet18(num_classes=10).to(dev), (3, 32, 32)

def learner(kind, model, dev, bs, steps, seed=0, compile=False):
    torch.manual_seed(seed)
    net, shape = build(model, dev)
    x = torch.randn(bs * steps, *shape, device=dev); y = torch.randint(0, 10, (bs * steps,), device=dev)
    dl = DataLoader(ArrayDataset(x, y), bs=bs, shuffle=False, device=dev)
    vdl = DataLoader(ArrayDataset(x[:bs], y[:bs]), bs=bs, device=dev)
    cbs = []
    if kind != 'dense': sparsify_model(net, 0.9, sparse_f=erdos_renyi_sparsity)
    if kind == 'rigl': cbs = [DynamicSparseTrainingCallback(**{**RigL_presets, 'stop_pct': 1.0}, batches_per_update=25, seed=0)]
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
    p.add_argument('--rounds', type=int, default=15); p.add_argument('--steps', type=int, default=200)
    p.add_argument('--compile', action='store_true', help="torch.compile the model in all three variants")
    args = p.parse_args(); dev = setup(args)
    model = args.model or ('resnet18' if dev.type == 'cuda' else 'mlp')
    bs = 256 if model == 'resnet18' else 128
    rounds, steps = (2, 30) if args.quick else (args.rounds, args.steps)
    learners = {k: learner(k, model, dev, bs, steps, compile=args.compile) for k in ('dense', 'static', 'rigl')}
    for l in learners.values(): round_time(l, dev)  # warm-up
    times = {k: [] for k in learners}
    names = list(learners)
    for r in range(rounds):  # the order rotates every round, so no variant always runs first or last
        for k in names[r % 3:] + names[:r % 3]: times[k].append(round_time(learners[k], dev))
    d = median(times['dense'])
    n_upd = learners['rigl'].dynamic_sparse_training.n_updates
    print(f"overhead {model}{' compiled' if args.compile else ''} bs {bs} on {machine(dev)}: dense step {1e3 * d / steps:.3f} ms; "
          f"static {median(times['static']) / d:.3f}x, RigL every 25 steps {median(times['rigl']) / d:.3f}x "
          f"(median of {rounds} alternating rounds of {steps} steps; {n_upd} RigL updates)")
