"One full RigL topology update at 90 % ERK (drop fraction 0.3) over torchvision resnet50 (or the MLP / LeNet-5 of `common.build`), beside a dense training step"
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from common import parser, setup, timeit, machine, median, build
from fastsparse import sparsify_model, erdos_renyi_sparsity, DropGrowEngine, weight_magnitude, gradient_magnitude

if __name__ == '__main__':
    p = parser(__doc__); p.add_argument('--reps', type=int, default=10); p.add_argument('--bs', type=int, default=None, help="default: 32 (resnet50), 128 (mlp, lenet5)")
    p.add_argument('--model', default='resnet50', choices=['resnet50', 'mlp', 'lenet5'])
    args = p.parse_args(); dev = setup(args)
    torch.manual_seed(0)
    name = 'resnet18' if args.quick and args.model == 'resnet50' else args.model
    (net, shape), bs = build(name, dev), args.bs or (32 if name.startswith('resnet') else 128)
    sparsify_model(net, 0.9, sparse_f=erdos_renyi_sparsity)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(bs, *shape, device=dev), torch.randint(0, 10, (bs,), device=dev)
    def train_step():
        opt.zero_grad(); nn.functional.cross_entropy(net(x), y).backward(); opt.step()
    reps = 2 if args.quick else args.reps
    train_step()
    step = median([timeit(train_step, dev) for _ in range(reps)])
    nn.functional.cross_entropy(net(x), y).backward()  # dense gradients for RigL's grow score
    eng = DropGrowEngine(net, weight_magnitude, gradient_magnitude, seed=0)
    eng.update(0.3, opt)  # warm-up
    upd = median([timeit(lambda: eng.update(0.3, opt), dev) for _ in range(reps)])
    n = sum(w.numel() for w in eng.weights)
    shape_txt = 'x'.join(map(str, shape[1:]))
    print(f"update {name} 90% ERK ({n / 1e6:.2f} M sparse weights, {len(eng.weights)} layers) on {machine(dev)}: "
          f"one RigL update {1e3 * upd:.1f} ms; dense training step (batch {bs}, {shape_txt}) {1e3 * step:.1f} ms")
