"Memory: persistent extra bytes per sparse weight, and peak memory of a RigL update step vs a plain training step"
import sys, gc
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from torchvision.models import resnet50, resnet18
from common import parser, setup, machine
from fastsparse import sparsify_model, erdos_renyi_sparsity, weights_and_masks, DynamicSparseTrainingOptimizerWrapper, RigL_presets

def state_bytes(model): return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))

if __name__ == '__main__':
    args = parser(__doc__).parse_args(); dev = setup(args)
    torch.manual_seed(0)
    make = resnet18 if args.quick else resnet50
    dense = make(num_classes=10).to(dev); dense_bytes = state_bytes(dense)
    net = make(num_classes=10).to(dev)
    sparsify_model(net, 0.9, sparse_f=erdos_renyi_sparsity)
    n_sparse = sum(w.numel() for w in weights_and_masks(net)[0])
    extra = state_bytes(net) - dense_bytes
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    so = DynamicSparseTrainingOptimizerWrapper(net, opt, batches_per_update=2, total_steps=100, seed=0, **RigL_presets)
    x, y = torch.randn(32, 3, 32, 32, device=dev), torch.randint(0, 10, (32,), device=dev)
    def step():
        nn.functional.cross_entropy(net(x), y).backward(); so.step(); so.zero_grad()
    step()  # step 0: a plain step (optimizer state allocated)
    if dev.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(); step(); plain = torch.cuda.max_memory_allocated()  # step 1: plain
        torch.cuda.reset_peak_memory_stats(); step(); upd = torch.cuda.max_memory_allocated()    # step 2: topology update
        peak = f"peak memory: plain step {plain / 2**20:.0f} MiB, update step {upd / 2**20:.0f} MiB ({upd / plain:.3f}x)"
    else:
        step(); step()
        peak = "peak memory: not measured on CPU (no allocator statistics)"
    print(f"memory {make.__name__} 90% ERK on {machine(dev)}: persistent extra {extra / n_sparse:.3f} bytes per sparse weight "
          f"({extra / 2**20:.1f} MiB over {n_sparse / 1e6:.1f} M weights; bool masks, nothing else kept between updates); {peak}")
