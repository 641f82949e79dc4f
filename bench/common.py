"Shared helpers of the benchmark scripts"
import argparse, platform, statistics, time
import torch
from torch import nn

def parser(desc):
    p = argparse.ArgumentParser(description=desc)
    p.add_argument('--device', default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument('--quick', action='store_true', help="a tiny smoke run (CI): numbers are not meaningful")
    p.add_argument('--threads', type=int, default=None, help="torch CPU threads (default: torch's)")
    return p

def setup(args):
    dev = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if args.threads: torch.set_num_threads(args.threads)
    return dev

def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()

def timeit(f, dev, n=1):
    "Seconds per call of `f` over `n` calls, synchronised"
    sync(dev); t = time.perf_counter()
    for _ in range(n): f()
    sync(dev); return (time.perf_counter() - t) / n

def machine(dev):
    name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f"{platform.processor() or platform.machine()} CPU x{torch.get_num_threads()} threads"
    return f"{name}, torch {torch.__version__}"

median = statistics.median

def build(model, dev):
    "(model, input shape) of the benchmarks' networks: the MLP 784-300-100-10, a LeNet-5-like CNN, or torchvision's resnet18/resnet50"
    if model == 'mlp': return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)).to(dev), (1, 28, 28)
    if model == 'lenet5':
        return nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10)).to(dev), (1, 28, 28)
    import torchvision.models
    return getattr(torchvision.models, model)(num_classes=10).to(dev), (3, 32, 32)
