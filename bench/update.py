"One full RigL topology update over torchvision resnet50 at 90 % ERK (drop fraction 0.3), beside a dense training step"
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from torchvision.models import resnet50, resnet18
from common import parser, setup, timeit, machine, median
from fastsparse import sparsify_model, erdos_renyi_sparsity, DropGrowEngine, weight_magnitude, gradient_magnitude

if __name__ == '__main__':
    p = parser(__doc__); p.add_argument('--reps', type=int, default=10); p.add_argument('--bs', type=int, default=32)
    args = p.parse_args(); dev = setup(args)
    torch.manual_seed(0)
    net = (resnet18 if args.quick else resnet50)(num_classes=10).to(dev)
    sparsify_model(net, 0.9, sparse_f=erdos_renyi_sparsity)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(args.bs, 3, 32, 32, device=dev), torch.randint(0, 10, (args.bs,), device=dev)
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
    print(f"update {'resnet18' if args.quick else 'resnet50'} 90% ERK ({n / 1e6:.1f} M sparse weights, {len(eng.weights)} layers) on {machine(dev)}: "
          f"one RigL update {1e3 * upd:.1f} ms; dense training step (batch {args.bs}, 32x32) {1e3 * step:.1f} ms")
