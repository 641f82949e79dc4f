"Enforcement cost per batch: re-masking after the optimizer step, as a fraction of a training step (MLP 784-300-100-10, batch 128)"
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from common import parser, setup, timeit, machine, median
from fastsparse import sparsify_model, erdos_renyi_sparsity, apply_masks

if __name__ == '__main__':
    p = parser(__doc__); p.add_argument('--reps', type=int, default=2000)
    args = p.parse_args(); dev = setup(args)
    reps = 50 if args.quick else args.reps
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)).to(dev)
    h = sparsify_model(net, 0.9, sparse_f=erdos_renyi_sparsity)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(128, 784, device=dev), torch.randint(0, 10, (128,), device=dev)
    def train_step():
        opt.zero_grad(); nn.functional.cross_entropy(net(x), y).backward(); opt.step()
    with_masks = median([timeit(train_step, dev, reps // 10) for _ in range(10)])
    mask_only = median([timeit(lambda: apply_masks(net), dev, reps // 10) for _ in range(10)])
    print(f"enforce MLP 784-300-100-10 bs 128 on {machine(dev)}: re-masking {1e6 * mask_only:.1f} us per step = "
          f"{100 * mask_only / with_masks:.2f} % of a training step ({1e3 * with_masks:.3f} ms, masking included)")
