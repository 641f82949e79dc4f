"How a truly sparse MLP's training step time and memory grow with width: 784-W-W-10 at a fixed density and at a fixed number of active weights per hidden layer, dense where it fits"
import sys, json, subprocess, resource, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from common import parser, setup, timeit, machine, median

def mlp(w, dev): return nn.Sequential(nn.Linear(784, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 10)).to(dev)

def sparse_mlp(w, density, dev):
    "784-w-w-10 of `TrulySparseLinear` layers built directly (no dense weight ever), each at `density`"
    from fastsparse.sparse_linear import TrulySparseLinear
    g = torch.Generator(device=dev).manual_seed(0)
    l = lambda i, o: TrulySparseLinear(i, o, sparsity=1 - density, generator=g, device=dev)
    return nn.Sequential(l(784, w), nn.ReLU(), l(w, w), nn.ReLU(), l(w, 10))

def _rss_mib()->float:
    "Current resident memory of this process (Linux)"
    return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize() / 2**20

def one(kind, w, density, steps, bs, dev):
    "Step time (median of `steps` timed steps after one warm-up), bytes of parameters+gradients+momentum+index buffers, peak RSS of this process"
    torch.manual_seed(0)
    base0 = _rss_mib()  # after the imports: the interpreter, torch and fastsparse
    m = mlp(w, dev) if kind == 'dense' else sparse_mlp(w, density, dev)
    x, y = torch.randn(bs, 784, device=dev), torch.randint(0, 10, (bs,), device=dev)
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    def step(): opt.zero_grad(); nn.functional.cross_entropy(m(x), y).backward(); opt.step()
    step()
    t = median([timeit(step, dev) for _ in range(steps)])
    state = sum(3 * p.numel() * p.element_size() for p in m.parameters()) + sum(b.numel() * b.element_size() for b in m.buffers())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    return dict(step_ms=1e3 * t, state_mib=state / 2**20, peak_rss_mib=peak, extra_mib=peak - base0)

def run(kind, w, density, steps, bs, args):
    "`one` in a fresh process, so that its peak RSS is its own"
    cmd = [sys.executable, __file__, '--one', f'{kind},{w},{density},{steps},{bs}'] + (['--threads', str(args.threads)] if args.threads else []) + (['--device', args.device] if args.device else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode: raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])

def plot(rows, fn):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    for (kind, label), st in zip([('dense', 'dense'), ('fixed_density', 'truly sparse, 1 % density'), ('fixed_active', 'truly sparse, fixed active weights')], ['o-', 's-', '^-']):
        r = [x for x in rows if x['kind'] == kind]
        if not r: continue
        ax[0].loglog([x['w'] for x in r], [x['step_ms'] for x in r], st, label=label)
        ax[1].loglog([x['w'] for x in r], [x['extra_mib'] for x in r], st, label=label)
    ax[0].set(xlabel='width W of 784-W-W-10', ylabel='training step (ms, batch 128)'); ax[1].set(xlabel='width W', ylabel='peak memory above imports (MiB)')
    for a in ax: a.grid(True, which='both', alpha=.3)
    ax[0].legend(fontsize=8); fig.tight_layout(); fig.savefig(fn, dpi=80)

if __name__ == '__main__':
    p = parser(__doc__); p.add_argument('--one', default=None, help="internal: run one configuration")
    p.add_argument('--density', type=float, default=0.01); p.add_argument('--active', type=int, default=160_000, help="active weights of the W-W layer in the fixed-active series")
    p.add_argument('--png', default=str(Path(__file__).parents[1]/'nbs'/'images'/'truly_sparse_scaling.png'))
    args = p.parse_args(); dev = setup(args)
    if args.one:
        k, w, d, s, bs = args.one.split(','); print(json.dumps(one(k, int(w), float(d), int(s), int(bs), dev))); sys.exit()
    widths, dense_max = ([250, 500], 500) if args.quick else ([1000, 2000, 4000, 8000, 16000, 32000], 8000)
    active = 2000 if args.quick else args.active
    print(f"truly sparse scaling, batch 128, on {machine(dev)}", flush=True)
    rows = []
    for w in widths:
        for kind, d in [('dense', 1.), ('fixed_density', args.density), ('fixed_active', min(1., active / w**2))]:
            if kind == 'dense' and w > dense_max: continue
            steps = 3 if kind == 'dense' or args.quick else 10
            r = dict(kind=kind, w=w, density=d, **run('dense' if kind == 'dense' else 'sparse', w, d, steps, 128, args)); rows.append(r)
            print(f"  {kind:13s} W={w:6d} density {d:.2e}: step {r['step_ms']:9.2f} ms, parameters+gradients+momentum+indices {r['state_mib']:9.1f} MiB, "
                  f"peak RSS {r['peak_rss_mib']:8.0f} MiB ({r['extra_mib']:7.1f} above the imports)", flush=True)
    if not args.quick: plot(rows, args.png)
    fd, fa = [x for x in rows if x['kind'] == 'fixed_density'], [x for x in rows if x['kind'] == 'fixed_active']
    print(f"truly_sparse_scaling: W {widths[0]} -> {widths[-1]}: at {args.density:.0%} density step {fd[0]['step_ms']:.1f} -> {fd[-1]['step_ms']:.1f} ms, "
          f"memory above imports {fd[0]['extra_mib']:.0f} -> {fd[-1]['extra_mib']:.0f} MiB; at {active:,} active weights step {fa[0]['step_ms']:.1f} -> {fa[-1]['step_ms']:.1f} ms, "
          f"{fa[0]['extra_mib']:.0f} -> {fa[-1]['extra_mib']:.0f} MiB")
