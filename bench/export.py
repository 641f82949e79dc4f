"CPU inference of an exported 95 %-sparse MLP (each Linear layer in the format export_sparse times fastest for each batch size) vs the dense model, at batch 1, 16 and 64"
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from common import parser, setup, timeit, machine, median
from fastsparse import sparsify_model, erdos_renyi_sparsity
from fastsparse.export import export_sparse

if __name__ == '__main__':
    p = parser(__doc__); p.add_argument('--reps', type=int, default=450)
    args = p.parse_args(); dev = setup(args)
    reps = 30 if args.quick else args.reps
    res = []
    for name, widths in (('784-300-100-10', (784, 300, 100, 10)), ('784-1000-1000-1000-10', (784, 1000, 1000, 1000, 10))):
        torch.manual_seed(0)
        layers = []
        for a, b in zip(widths[:-1], widths[1:]): layers += [nn.Linear(a, b), nn.ReLU()]
        net = nn.Sequential(*layers[:-1]).to(dev).eval()
        dense = nn.Sequential(*[l for l in net]).eval()
        sparsify_model(net, 0.95, sparse_f=erdos_renyi_sparsity)
        sp = export_sparse(net, batch_sizes=(1, 16, 64))
        for bs in (1, 16, 64):
            x = torch.randn(bs, widths[0], device=dev)
            with torch.inference_mode():
                rs = []
                for r in range(15):  # alternating rounds: the ratio of each round
                    f = [lambda: timeit(lambda: dense(x), dev, reps // 15), lambda: timeit(lambda: sp(x), dev, reps // 15)]
                    a, b = (f[0](), f[1]()) if r % 2 == 0 else reversed((f[1](), f[0]()))
                    rs.append(a / b)
            res.append(f"{name} bs {bs}: {median(rs):.2f}x")
    print(f"export 95% ERK MLPs, exported (formats timed per layer and batch size) vs dense inference on {machine(dev)} (>1 = exported faster): " + '; '.join(res))
