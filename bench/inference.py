"Inference of one exported sparse linear layer against the dense one, per format (CSR mm, CSR mv, row-padded ELL eager and compiled) and as export_sparse chooses, at several row counts, sparsities, both orientations and two masks (random, constant fan-in): ratios dense / sparse from alternating rounds in one process"
import sys, json, os, statistics, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from common import parser, setup, timeit, machine, median
from fastsparse.core import sparse_mask, constant_fan_in_mask
from fastsparse.export import SparseInferenceLinear, inference_linear, _eager_ell_ok, _warm

def layers(o, i, s, mask_kind, dev, batches, compile, gen):
    "The masked dense layer, one SparseInferenceLinear per forced format, and the one `export_sparse` would make (timed choice)"
    torch.manual_seed(0)
    lin = nn.Linear(i, o).to(dev).requires_grad_(False)
    mask = (sparse_mask if mask_kind == 'random' else constant_fan_in_mask)((o, i), s, generator=gen).to(dev)
    lin.weight.mul_(mask)
    fmts = ['csr', 'csr_mv', 'ell'] + (['ell_c'] if compile else [])
    forced = {f: inference_linear(lin.weight, mask, lin.bias, batch_sizes=batches, choose=f.split('_c')[0] if f == 'ell_c' else f,
                                  compile=f == 'ell_c') for f in fmts}
    t = time.perf_counter()
    chosen = inference_linear(lin.weight, mask, lin.bias, batch_sizes=batches, compile=compile, choose='time')
    return lin, forced, chosen, time.perf_counter() - t

def cpu_timeit(f, dev, n=1):
    "CPU seconds of this process per call of `f` over `n` calls: one thread's work, whatever else the machine runs (CPU, one thread only)"
    t = time.process_time()
    for _ in range(n): f()
    return (time.process_time() - t) / n

def cell(lin, forced, chosen, n, dev, rounds, target, timeit=timeit):
    "Per-round ratios dense time / format time at `n` rows, formats in alternating order"
    x = torch.randn(n, lin.in_features, device=dev)
    runs = {'dense': lambda: lin(x)}
    for f, l in forced.items():
        if f == 'csr_mv' and n != 1: continue
        if f == 'ell' and not _eager_ell_ok(l, n): continue
        runs[f] = (lambda l: lambda: l(x))(l)
    runs['export'] = lambda: chosen(x)
    with torch.inference_mode():
        for f, r in runs.items(): torch.testing.assert_close(r(), lin(x), atol=1e-4, rtol=1e-4)  # every format computes the masked product
        reps = {f: max(1, int(target / max(timeit(r, dev), 1e-7))) for f, r in runs.items()}
        ts = {f: [] for f in runs}
        for k in range(rounds):
            for f in (list(runs) if k % 2 == 0 else list(runs)[::-1]): ts[f].append(timeit(runs[f], dev, reps[f]))
    return {f: [d / t for d, t in zip(ts['dense'], v)] for f, v in ts.items()}, {f: min(ts['dense']) / min(v) for f, v in ts.items()}, median(ts['dense'])

def q(xs): return statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3

if __name__ == '__main__':
    p = parser(__doc__)
    p.add_argument('--rounds', type=int, default=15, help="alternating rounds per cell")
    p.add_argument('--target', type=float, default=3e-3, help="seconds of calls per format and round")
    p.add_argument('--compile', action=__import__('argparse').BooleanOptionalAction, default=None, help="include compiled ELL (default: yes, no with --quick)")
    p.add_argument('--masks', default='random,constant_fan_in', help="comma-separated: random, constant_fan_in")
    p.add_argument('--shapes', default='3072x768,768x3072', help="comma-separated out x in shapes")
    p.add_argument('--sparsities', default='0.9,0.95,0.99', help="comma-separated sparsities")
    p.add_argument('--batches', default='1,8,64', help="comma-separated rows per call")
    p.add_argument('--json', default=None, help="also write every cell's per-round ratios to this file")
    p.add_argument('--clock', default='wall', choices=('wall', 'cpu'), help="wall: elapsed time; cpu: this process's CPU time, for a busy machine (needs --threads 1 on a CPU)")
    args = p.parse_args(); dev = setup(args)
    if args.clock == 'cpu' and (dev.type != 'cpu' or torch.get_num_threads() != 1): p.error("--clock cpu measures one thread's CPU time: use it with --threads 1 on a CPU")
    compile = (not args.quick) if args.compile is None else args.compile
    shapes = [(96, 64), (64, 96)] if args.quick else [tuple(int(v) for v in sh.split('x')) for sh in args.shapes.split(',')]
    sparsities = (0.9,) if args.quick else tuple(float(v) for v in args.sparsities.split(','))
    batches = (1, 4) if args.quick else tuple(int(v) for v in args.batches.split(','))
    rounds, target = (3, 1e-4) if args.quick else (args.rounds, args.target)
    load0 = os.getloadavg()
    print(f"{machine(dev)}; {args.clock} clock; load average {load0[0]:.1f} at start; ratio = dense time / format time (>1: faster than dense), "
          f"median of the per-round ratios over {rounds} alternating rounds (in brackets: fastest dense round / fastest round of the format, "
          "which a busy machine disturbs less; quartiles in the JSON)", flush=True)
    gen, res, t_compile = torch.Generator().manual_seed(0), [], None
    if compile:  # the one-time compile, measured apart (both graphs: one row, several rows)
        t = time.perf_counter(); l0 = inference_linear(torch.randn(16, 8), None, None, batch_sizes=(1, 2), compile=True, choose='ell')
        t_compile = time.perf_counter() - t
        print(f"compile of the ELL graphs (one row, several rows): {t_compile:.1f} s", flush=True)
    for mask_kind in args.masks.split(','):
        for o, i in shapes:
            for s in sparsities:
                lin, forced, chosen, t_plan = layers(o, i, s, mask_kind, dev, batches, compile, gen)
                ell = forced['ell']
                pad = sum(v.numel() for v, _ in ell._ell_slices()) / ell.n_active
                print(f"{o}x{i} (out x in), {s:.0%} sparse, {mask_kind} mask (ELL padding {pad:.2f}x); export_sparse's timed choice took {t_plan:.2f} s: "
                      f"{chosen.plan}", flush=True)
                for n in batches:
                    r, best, td = cell(lin, forced, chosen, n, dev, rounds, target, cpu_timeit if args.clock == 'cpu' else timeit)
                    row = dict(shape=f"{o}x{i}", sparsity=s, mask=mask_kind, rows=n, dense_us=td * 1e6, choice=chosen.format_for(n),
                               ratios={f: median(v) for f, v in r.items() if f != 'dense'}, quartiles={f: q(v) for f, v in r.items() if f != 'dense'},
                               best={f: v for f, v in best.items() if f != 'dense'})
                    res.append(row)
                    print(f"  {n:3d} rows: dense {td * 1e6:8.1f} us; " + ', '.join(f"{f} {v:.2f}x ({row['best'][f]:.2f}x)" for f, v in row['ratios'].items())
                          + f"; export chose {row['choice']}", flush=True)
    if args.json: Path(args.json).write_text(json.dumps(dict(machine=machine(dev), clock=args.clock, load=[load0, os.getloadavg()], compile_s=t_compile, cells=res), indent=1))
    key = next((r for r in res if r['rows'] == 1 and r['sparsity'] == sparsities[0] and r['shape'] == f"{shapes[0][0]}x{shapes[0][1]}"), res[0])
    print(f"inference on {machine(dev)} (load average {os.getloadavg()[0]:.1f} at end): {key['shape']} {key['sparsity']:.0%} {key['mask']} mask at 1 row, "
          f"export_sparse {key['ratios']['export']:.2f}x dense ({key['choice']}); {len(res)} cells")
