"A network whose dense form does not fit in memory (784-100000-100000-10: 10^10 weights, or --width 50000) trained truly sparse on Fashion-MNIST: SET for an epoch, then RigL"
import sys, time, resource
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from common import parser, setup, machine, sync
from fastsparse.data import fashion_mnist
from fastsparse.schedule import SET_presets, RigL_presets
from fastsparse.wrapper import DynamicSparseTrainingOptimizerWrapper
from fastsparse.sparse_linear import TrulySparseLinear, truly_sparse_layers

def peak_gib(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB

def model(w, sparsity, in_sparsity, out_sparsity, block_size, dev):
    "784-w-w-10 made of `TrulySparseLinear` layers directly: the dense weights never exist"
    g = torch.Generator(device=dev).manual_seed(0)
    ls = [TrulySparseLinear(784, w, sparsity=in_sparsity, weight_init='sparse_kaiming', generator=g, device=dev),
          TrulySparseLinear(w, w, sparsity=sparsity, weight_init='sparse_kaiming', generator=g, device=dev),
          TrulySparseLinear(w, 10, sparsity=out_sparsity, weight_init='sparse_kaiming', generator=g, device=dev)]
    for l in ls: l.block_size = block_size  # RigL's dense gradient is formed `block_size` elements at a time
    return nn.Sequential(ls[0], nn.ReLU(), ls[1], nn.ReLU(), ls[2])

def train(m, wrapper, x, y, bs, steps, dev, label):
    "`steps` training steps over shuffled batches of (`x`, `y`); returns seconds and steps done"
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(len(label)))
    sync(dev); t0 = time.perf_counter()
    for s in range(steps):
        i = perm[(s * bs) % len(x):(s * bs) % len(x) + bs]
        xb, yb = x[i].to(dev), y[i].to(dev)
        wrapper.zero_grad()
        nn.functional.cross_entropy(m(xb), yb).backward()
        wrapper.step()
        if (s + 1) % 100 == 0: print(f"  {label} step {s + 1}/{steps}: {time.perf_counter() - t0:.0f} s, {wrapper.n_updates} updates, peak RSS {peak_gib():.2f} GiB", flush=True)
    sync(dev); return time.perf_counter() - t0

@torch.no_grad()
def accuracy(m, x, y, dev, bs=1000):
    return sum((m(x[i:i + bs].to(dev)).argmax(1).cpu() == y[i:i + bs]).sum().item() for i in range(0, len(x), bs)) / len(x)

if __name__ == '__main__':
    p = parser(__doc__)
    p.add_argument('--width', type=int, default=100_000, help="100,000: 10^10 weights, about 2 s per step at batch 128 on 2 CPU threads (one SET epoch about 15 min)"); p.add_argument('--sparsity', type=float, default=0.999)
    p.add_argument('--in-sparsity', type=float, default=0.995, help="sparsity of the 784-w input layer (at 99.9 %% a hidden unit has < 1 input)")
    p.add_argument('--out-sparsity', type=float, default=0.9, help="sparsity of the small w-10 output layer")
    p.add_argument('--bs', type=int, default=128); p.add_argument('--lr', type=float, default=0.05)
    p.add_argument('--rigl-steps', type=int, default=300); p.add_argument('--every', type=int, default=100, help="steps between topology updates")
    p.add_argument('--block-size', type=int, default=2**24, help="elements of RigL's dense gradient formed at once")
    args = p.parse_args(); dev = setup(args)
    w, set_steps, rigl_steps, n_train = (2000, 60, 40, 2000) if args.quick else (args.width, None, args.rigl_steps, None)
    every = 20 if args.quick else args.every
    xtr, ytr, xte, yte = fashion_mnist()
    xtr, xte = [(torch.tensor(a).float().view(len(a), -1) / 255 - 0.286) / 0.353 for a in (xtr, xte)]
    ytr, yte = torch.tensor(ytr).long(), torch.tensor(yte).long()
    if n_train: xtr, ytr, xte, yte = xtr[:n_train], ytr[:n_train], xte[:n_train], yte[:n_train]
    set_steps = set_steps or len(xtr) // args.bs  # one epoch
    print(f"truly sparse 784-{w}-{w}-10 on {machine(dev)}; data loaded, peak RSS {peak_gib():.2f} GiB", flush=True)
    t = time.perf_counter(); m = model(w, args.sparsity, args.in_sparsity, args.out_sparsity, args.block_size, dev)
    ls = truly_sparse_layers(m)
    n_act, n_all = sum(l.n_active for l in ls), sum(l.numel for l in ls)
    print(f"  built in {time.perf_counter() - t:.1f} s: {n_all:.3g} weights, {n_act:,} active ({1 - n_act / n_all:.4%} sparse); "
          f"a dense fp32 copy would need {4 * n_all / 2**30:.0f} GiB for the weights alone; peak RSS {peak_gib():.2f} GiB", flush=True)
    opt = torch.optim.SGD(m.parameters(), lr=args.lr, momentum=0.9)
    set_w = DynamicSparseTrainingOptimizerWrapper(m, opt, batches_per_update=every, total_steps=set_steps, seed=0, **SET_presets)
    t_set = train(m, set_w, xtr, ytr, args.bs, set_steps, dev, 'SET')
    acc_set = accuracy(m, xte, yte, dev)
    print(f"  SET: one epoch ({set_steps} steps, {set_w.n_updates} updates) in {t_set:.0f} s = {1e3 * t_set / set_steps:.0f} ms/step; "
          f"test accuracy {acc_set:.2%}; peak RSS {peak_gib():.2f} GiB", flush=True)
    rigl_w = DynamicSparseTrainingOptimizerWrapper(m, opt, batches_per_update=every, total_steps=rigl_steps, seed=0, **RigL_presets)
    t_rigl = train(m, rigl_w, xtr, ytr, args.bs, rigl_steps, dev, 'RigL')
    acc_rigl = accuracy(m, xte, yte, dev)
    print(f"  RigL: {rigl_steps} steps ({rigl_w.n_updates} updates, dense gradient in blocks of {args.block_size:,} elements) in {t_rigl:.0f} s = "
          f"{1e3 * t_rigl / rigl_steps:.0f} ms/step; test accuracy {acc_rigl:.2%}; peak RSS {peak_gib():.2f} GiB", flush=True)
    assert sum(l.n_active for l in truly_sparse_layers(m)) == n_act  # exact counts through every update
    print(f"truly_sparse_large 784-{w}-{w}-10 ({n_act:,} active of {n_all:.3g}): SET epoch {t_set:.0f} s ({1e3 * t_set / set_steps:.0f} ms/step), "
          f"accuracy {acc_set:.2%}; RigL {rigl_steps} steps {1e3 * t_rigl / rigl_steps:.0f} ms/step, accuracy {acc_rigl:.2%}; peak RSS {peak_gib():.2f} GiB")
