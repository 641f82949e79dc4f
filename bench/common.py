"Shared helpers of the benchmark scripts"
import argparse, platform, statistics, time
import torch

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
