"Truly sparse MLP training steps (SGD momentum, SET update every 100 steps included) against dense and masked-dense, plus the cost of one SET and one block-wise RigL update"
import sys, copy, gc, resource
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from common import parser, setup, timeit, machine, median
from fastsparse.core import sparsify_model
from fastsparse.sparse_linear import truly_sparse, truly_sparse_layers, update_truly_sparse, record_for_update

def mlp(h, dev): return nn.Sequential(nn.Linear(784, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 10)).to(dev)

def quartiles(xs):
    q = torch.tensor(xs).quantile(torch.tensor([0.25, 0.5, 0.75])).tolist()
    return f"{q[1]:.2f}x (quartiles {q[0]:.2f}-{q[2]:.2f})"

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
    print(f"  784-{h}-{h}-10 at {sparsity:.0%}: dense {1e3 * median(res['dense']):.1f} ms, masked {1e3 * median(res['masked']):.1f} ms, "
          f"truly sparse {1e3 * median(res['sparse']):.2f} ms per step (SET every 100 steps, {tr['sparse'].t} steps, "
          f"{tr['sparse'].t // 100} updates); truly sparse faster than dense {quartiles(r_d)}, than masked {quartiles(r_m)} over {rounds} rounds", flush=True)
    return median(r_d)

def updates(h, sparsity, dev, reps, bs, block_size):
    "Times of one SET and one block-wise RigL update beside the sparse and dense step, and the RigL update's peak extra memory"
    torch.manual_seed(0)
    x, y = torch.randn(bs, 784, device=dev), torch.randint(0, 10, (bs,), device=dev)
    m = mlp(h, dev); sparsify_model(m, sparsity); truly_sparse(m)
    t = Trainer(m, x, y); t.step()
    sparse = median([timeit(t.step, dev) for _ in range(reps)])
    set_t = median([timeit(lambda: update_truly_sparse(m, 0.3, 'random', t.opt, t.gen), dev) for _ in range(reps)])
    def rigl():
        record_for_update(m); t.opt.zero_grad(); nn.functional.cross_entropy(m(x), y).backward()
        return timeit(lambda: update_truly_sparse(m, 0.3, 'gradient', t.opt, block_size=block_size), dev)
    rigl_t = median([rigl() for _ in range(reps)])
    layer = truly_sparse_layers(m)[1]
    peak = min(block_size // layer.in_features, layer.out_features) * layer.in_features * 4  # one block of the dense gradient (fp32)
    d = Trainer(mlp(h, dev), x, y); d.step()
    dense = median([timeit(d.step, dev) for _ in range(max(2, reps // 3))])
    del d; gc.collect()
    print(f"  784-{h}-{h}-10 at {sparsity:.0%}: one SET update {1e3 * set_t:.1f} ms = {set_t / sparse:.2f} sparse steps ({1e3 * sparse:.2f} ms); "
          f"one RigL update (block {block_size:,} elements) {1e3 * rigl_t:.1f} ms = {rigl_t / dense:.2f} dense steps ({1e3 * dense:.1f} ms), "
          f"its largest dense-gradient block {peak / 2**20:.1f} MiB (a dense gradient of the layer: {layer.numel * 4 / 2**20:.1f} MiB)", flush=True)
    return set_t / sparse, rigl_t / dense

if __name__ == '__main__':
    p = parser(__doc__); p.add_argument('--rounds', type=int, default=7); p.add_argument('--bs', type=int, default=128)
    p.add_argument('--block-size', type=int, default=2**22)
    args = p.parse_args(); dev = setup(args)
    print(f"truly sparse training, batch {args.bs}, on {machine(dev)}", flush=True)
    if args.quick: nets, rounds, reps = [(200, 0.97, 3, 3), (400, 0.99, 2, 3)], 2, 2
    else: nets, rounds, reps = [(1000, 0.97, 20, 100), (4000, 0.99, 3, 100), (10000, 0.99, 1, 30)], args.rounds, 5
    ratios = [compare(h, s, dev, rounds, args.bs, nd, ns) for h, s, nd, ns in nets]
    s, r = updates(400 if args.quick else 4000, 0.99, dev, reps, args.bs, args.block_size)
    print(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    print(f"truly_sparse: " + ', '.join(f"{h}: {x:.1f}x" for (h, *_), x in zip(nets, ratios)) + f" faster than dense; SET update {s:.2f} sparse steps, RigL update {r:.2f} dense steps")
