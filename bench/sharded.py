"FSDP2 (fully_shard), CPU processes with gloo: per-rank bytes of parameters, masks and Adam state at world size 1 and 2, one RigL and one SET update's time and collective bytes per rank, and the two ways to select over shards"
import sys, os, json, socket, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from common import parser, median

def mlp(width:int): return nn.Sequential(nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))

def gather_select(keys, k, group):
    "The other way to find a layer's k best keys over shards: each rank's best min(k, n) keys all-gathered, the k-th of them is the cut (ties: lower ranks first)"
    from fastsparse.sharded import _all_gather, _all_reduce
    top = torch.full((k,), float('-inf'))
    kk = min(k, keys.numel())
    top[:kk] = keys.topk(kk, sorted=False).values
    cut = _all_gather(top, group).reshape(-1).topk(k, sorted=False).values.min()
    above, ties = torch.nonzero(keys > cut).squeeze(1), torch.nonzero(keys == cut).squeeze(1)
    counts = _all_gather(torch.tensor([above.numel(), ties.numel()]), group)
    before = counts[:dist.get_rank(group), 1].sum()
    take = int((k - counts[:, 0].sum() - before).clamp(0, ties.numel()))
    return torch.cat([above, ties[:take]])

def per_rank_bytes(model, opt):
    from fastsparse import weights_and_masks
    from fastsparse.sharded import _local
    size = lambda ts: sum(_local(t).numel() * _local(t).element_size() for t in ts)
    states = [t for st in opt.state.values() for t in st.values() if isinstance(t, torch.Tensor) and t.dim() > 0]
    return dict(params=size(model.parameters()), masks=size(weights_and_masks(model)[1]), opt=size(states))

def timed(f, group):
    dist.barrier(group); t = time.perf_counter(); r = f(); dist.barrier(group)
    return time.perf_counter() - t, r

def worker(rank, world, port, width, reps, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    torch.set_num_threads(1)
    from torch.distributed.fsdp import fully_shard
    from fastsparse import sparsify_model, erdos_renyi_sparsity, DropGrowEngine, weight_magnitude, gradient_magnitude, random_score, communication, topk_sharded
    from fastsparse.sharded import _local, _shard_group
    from fastsparse.engine import _rank_keys
    torch.manual_seed(0)
    model = mlp(width)
    for l in model:
        if isinstance(l, nn.Linear): fully_shard(l)
    fully_shard(model)
    sparsify_model(model, 0.9, sparse_f=erdos_renyi_sparsity, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(64 // world, 784), torch.randint(0, 10, (64 // world,))
    nn.functional.cross_entropy(model(x), y).backward(); opt.step()  # Adam's state exists
    res = dict(bytes=per_rank_bytes(model, opt))
    nn.functional.cross_entropy(model(x), y).backward()  # dense gradients for RigL
    engines = dict(RigL=DropGrowEngine(model, weight_magnitude, gradient_magnitude, seed=0), SET=DropGrowEngine(model, weight_magnitude, random_score, seed=0))
    if world == 1:  # the same model unsharded, updated by the one-process engine, in the same rounds
        torch.manual_seed(0)
        plain = mlp(width)
        sparsify_model(plain, 0.9, sparse_f=erdos_renyi_sparsity, generator=torch.Generator().manual_seed(0))
        popt = torch.optim.Adam(plain.parameters(), lr=1e-3)
        nn.functional.cross_entropy(plain(x), y).backward(); popt.step()
        nn.functional.cross_entropy(plain(x), y).backward()
        engines.update({'RigL unsharded': DropGrowEngine(plain, weight_magnitude, gradient_magnitude, seed=0),
                        'SET unsharded': DropGrowEngine(plain, weight_magnitude, random_score, seed=0)})
    opts = {n: popt if 'unsharded' in n else opt for n in engines}
    w, m = model[2].weight, model[2].weight_mask  # the largest layer: RigL's grow selection there, both ways
    group = _shard_group(w) or dist.group.WORLD
    keys = _rank_keys(_local(w.grad).reshape(-1)[~_local(m).reshape(-1)].float(), True, True, fresh=True)
    k = round(0.3 * int(m.full_tensor().sum()))
    sels = dict(radix=lambda: topk_sharded([keys], [k], group)[0], gather=lambda: gather_select(keys, k, group))
    times = {n: [] for n in [*engines, *sels]}
    comm = {}
    for r in range(reps + 1):  # alternating rounds; the first is a warm-up
        for n, f in [*[(n, lambda e=e, o=opts[n]: e.update(0.3, o)) for n, e in engines.items()], *sels.items()]:
            with communication() as c: t, _ = timed(f, group)
            if r: times[n].append(t)
            comm[n] = dict(c)
    a, b = sels['radix'](), sels['gather']()
    assert torch.equal(a.sort().values, b.sort().values), 'the two selections disagree'
    res.update(times=times, comm=comm, n_weights=sum(p.numel() for p in model.parameters()), layer=tuple(w.shape), k=k)
    if rank == 0: Path(out).write_text(json.dumps(res))
    dist.barrier(); dist.destroy_process_group()
    sys.stdout.flush(); os._exit(0)  # gloo's teardown at interpreter exit is slow

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def run(world, width, reps):
    out = Path(tempfile.mkdtemp())/'res.json'
    mp.spawn(worker, args=(world, free_port(), width, reps, str(out)), nprocs=world, join=True)
    return json.loads(out.read_text())

if __name__ == '__main__':
    p = parser(__doc__); p.add_argument('--width', type=int, default=2000); p.add_argument('--reps', type=int, default=5)
    args = p.parse_args()
    if args.device not in (None, 'cpu'): raise SystemExit("this benchmark runs CPU processes (gloo); NCCL needs one GPU per rank")
    width, reps = (200, 1) if args.quick else (args.width, args.reps)
    rs = {w: run(w, width, reps) for w in (1, 2)}
    fmt = lambda b: f"{b / 2**20:.2f} MiB"
    print(f"MLP 784-{width}-{width}-10 at 90 % ERK, {rs[1]['n_weights'] / 1e6:.2f} M weights, Adam; {reps} alternating rounds, median (min-max)")
    for w, r in rs.items():
        b = r['bytes']
        print(f"world {w}: per rank parameters {fmt(b['params'])}, masks {fmt(b['masks'])}, Adam state {fmt(b['opt'])}, total {fmt(sum(b.values()))}")
    for w, r in rs.items():
        for n in r['times']:
            t, c = r['times'][n], r['comm'][n]
            what = f"{n} selection of {r['k']:,} of layer {r['layer']}" if n in ('radix', 'gather') else f"{n} update"
            print(f"world {w}: {what}: {1e3 * median(t):.1f} ms ({1e3 * min(t):.1f}-{1e3 * max(t):.1f}), {c['calls']} collectives, {c['bytes']:,} bytes sent per rank")
    ratio = sum(rs[2]['bytes'].values()) / sum(rs[1]['bytes'].values())
    print(f"sharded: per-rank bytes at world 2 / world 1 = {ratio:.3f}; RigL update {1e3 * median(rs[2]['times']['RigL']):.1f} ms with {rs[2]['comm']['RigL']['bytes']:,} bytes per rank at world 2")
