"Data-parallel RigL on a truly sparse layer: time and numbers moved per rank to form the global batch's dense gradient by all-reduce of gᵀx blocks or all-gather of the recorded rows (gloo, CPU processes)"
import sys, os, platform, socket
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from common import parser, setup, timeit, median

FULL = [(784, 300, r) for r in (32, 1024)] + [(1000, 1000, r) for r in (32, 128, 512)] + [(4000, 4000, r) for r in (32, 128, 512)]
QUICK = [(64, 48, 8), (48, 64, 64)]

def _worker(rank, world, port, cases, rounds, threads, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    torch.set_num_threads(threads)
    from fastsparse.sparse_linear import TrulySparseLinear, rigl_sync_numbers, _grow_by_gradient, _flat, _global_recorded
    rows = []
    for i, o, b in cases:
        g = torch.Generator().manual_seed(0)  # the same layer on every rank; each rank its own rows
        layer = TrulySparseLinear(i, o, sparsity=0.99, generator=g)
        x, gy = torch.randn(b, i, generator=torch.Generator().manual_seed(rank)), torch.randn(b, o, generator=torch.Generator().manual_seed(10 + rank))
        excl, k = layer.flat(), max(1, layer.n_active // 10)
        res = {w: [] for w in ('all_reduce', 'all_gather')}
        comm = {w: [] for w in res}
        for _ in range(rounds):  # alternating rounds: the machine's noise falls on both ways alike
            for w in res:
                layer.rigl_sync, layer._rec = w, [[x, gy]]
                dist.barrier()
                res[w].append(timeit(lambda: _grow_by_gradient(layer, k, excl, layer.block_size), torch.device('cpu')))
                dist.barrier()
                if w == 'all_reduce':  # the collectives alone: every block of gᵀx (block_size elements at a time)
                    buf = torch.randn(min(o, max(1, layer.block_size // i)) * i)
                    n_blocks = -(-o // max(1, layer.block_size // i))
                    comm[w].append(timeit(lambda: [dist.all_reduce(buf) for _ in range(n_blocks)], torch.device('cpu')))
                else: comm[w].append(timeit(lambda: _global_recorded(layer), torch.device('cpu')))
        nums = rigl_sync_numbers(i, o, b, world)
        rows.append(dict(shape=(i, o, b), numbers=nums, **{f'{w}_ms': [1e3 * t for t in res[w]] for w in res},
                         **{f'{w}_comm_ms': [1e3 * t for t in comm[w]] for w in comm}))
    if rank == 0: torch.save(rows, out)
    dist.barrier()
    dist.destroy_process_group()

def _fmt(ts): return f"{median(ts):8.2f} ({min(ts):.2f}-{max(ts):.2f})"

if __name__ == '__main__':
    p = parser(__doc__)
    p.add_argument('--world', type=int, default=2, help="processes (ranks)")
    p.add_argument('--rounds', type=int, default=5, help="alternating timed rounds of each way")
    args = p.parse_args(); dev = setup(args)
    if dev.type != 'cpu': print("gloo on CPU processes only: --device is ignored")
    cases, rounds = (QUICK, 1) if args.quick else (FULL, args.rounds)
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    out = Path(f'/tmp/truly_sparse_ddp_{os.getpid()}.pt')
    mp.spawn(_worker, args=(args.world, port, cases, rounds, args.threads or 1, str(out)), nprocs=args.world, join=True)
    rows = torch.load(out); out.unlink()
    print(f"{platform.machine()} CPU, torch {torch.__version__}; {args.world} gloo processes, {args.threads or 1} thread(s) each; RigL growth of 10 % of the "
          f"active weights of a 99 %-sparse layer; ms per update, median (min-max) of {rounds} alternating rounds; numbers in each way's collective "
          "result per rank (the all-reduced gᵀx, or the gathered rows), M = 10^6 float32")
    print(f"{'in x out, rows/rank':>22} | {'all-reduce M':>12} {'all-gather M':>12} {'rule':>10} | {'all-reduce ms':>22} {'all-gather ms':>22} | "
          f"{'comm only: reduce':>22} {'gather':>22} | faster")
    agree = 0
    for r in rows:
        (i, o, b), n = r['shape'], r['numbers']
        fast = 'all_reduce' if median(r['all_reduce_ms']) < median(r['all_gather_ms']) else 'all_gather'
        agree += fast == n['use']
        print(f"{f'{i} x {o}, {b}':>22} | {n['all_reduce'] / 1e6:12.3f} {n['all_gather'] / 1e6:12.3f} {n['use']:>10} | {_fmt(r['all_reduce_ms']):>22} "
              f"{_fmt(r['all_gather_ms']):>22} | {_fmt(r['all_reduce_comm_ms']):>22} {_fmt(r['all_gather_comm_ms']):>22} | {fast}")
    print(f"truly_sparse_ddp: the byte rule picked the faster way in {agree} of {len(rows)} cases")
