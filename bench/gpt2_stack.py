"Truly sparse training of a GPT-2-shaped stack (2 pre-norm blocks, width 768, MLP 3072, 12 heads, 1,024 tokens per step) at 90 / 95 / 99 % against masked-dense and dense: AdamW step times (forward, backward, step) in alternating rounds"
import sys, copy, os, time
from datetime import datetime, timezone
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
import torch.nn.functional as F
from common import parser, setup, timeit, machine, median
from fastsparse.core import sparsify_model, masked_params
from fastsparse.sparse_linear import truly_sparse, truly_sparse_layers

class Block(nn.Module):
    "A GPT-2 block, pre-norm: causal self-attention (one qkv Linear, one output Linear) and a GELU MLP, each added to the residual"
    def __init__(self, d=768, heads=12, mlp=3072):
        super().__init__()
        self.heads, self.ln1, self.ln2 = heads, nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, mlp), nn.Linear(mlp, d)
    def attn(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))
    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))

def stack(d, heads, mlp, n=2): return nn.Sequential(*[Block(d, heads, mlp) for _ in range(n)])

class Stepper:
    "AdamW steps of one model on one batch, loss: mean squared error to a random target"
    def __init__(self, model, x, y):
        self.model, self.x, self.y = model, x, y
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    def __call__(self):
        self.opt.zero_grad(); F.mse_loss(self.model(self.x), self.y).backward(); self.opt.step()

def spread(xs): return f"{median(xs):.2f}× ({min(xs):.2f}–{max(xs):.2f})"

def compare(s, args, dev, x, y):
    "Per-round speed ratios dense / masked and dense / truly sparse at sparsity `s`, rounds alternating with the order rotating"
    torch.manual_seed(0)
    dense = stack(args.d, args.heads, args.mlp).to(dev)
    masked = copy.deepcopy(dense); sparsify_model(masked, s)  # uniform: every Linear of the blocks at `s`
    ts = truly_sparse(copy.deepcopy(masked))
    assert len(truly_sparse_layers(ts)) == 8 and len(masked_params(masked)) == 8
    torch.testing.assert_close(ts(x), masked(x), atol=1e-4, rtol=1e-4)  # the same function, stored two ways
    st = dict(dense=Stepper(dense, x, y), masked=Stepper(masked, x, y), sparse=Stepper(ts, x, y))
    for f in st.values(): f()
    res, keys = {k: [] for k in st}, list(st)
    for r in range(args.rounds):
        for k in keys[r % 3:] + keys[:r % 3]: res[k].append(timeit(st[k], dev, args.steps))
    r_m = [d / m for d, m in zip(res['dense'], res['masked'])]; r_t = [d / t for d, t in zip(res['dense'], res['sparse'])]
    print(f"| {s:.0%} | {1e3 * median(res['dense']):.0f} ms | {1e3 * median(res['masked']):.0f} ms, {spread(r_m)} | "
          f"{1e3 * median(res['sparse']):.0f} ms, {spread(r_t)} |", flush=True)
    return median(r_t)

def main():
    p = parser(__doc__)
    p.add_argument('--sparsities', type=float, nargs='+', default=[0.9, 0.95, 0.99])
    p.add_argument('--rounds', type=int, default=7, help="alternating rounds per sparsity")
    p.add_argument('--steps', type=int, default=2, help="training steps per variant per round")
    args = p.parse_args(); dev = setup(args)
    args.d, args.heads, args.mlp, args.bs, args.seq = (64, 4, 256, 2, 16) if args.quick else (768, 12, 3072, 4, 256)
    if args.quick: args.sparsities, args.rounds, args.steps = [0.9], 1, 1
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine(dev)}, load average {os.getloadavg()[0]:.2f} at start; "
          f"2 pre-norm blocks, width {args.d}, MLP {args.mlp}, {args.heads} heads, batch {args.bs} × {args.seq} tokens; uniform sparsity over the "
          f"8 Linear layers; AdamW, no topology update in the timed steps; {args.rounds} alternating rounds of {args.steps} steps per variant; "
          "speed = dense step time / variant's, median of the per-round ratios (min–max)\n")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.bs, args.seq, args.d, generator=g).to(dev); y = torch.randn(args.bs, args.seq, args.d, generator=g).to(dev)
    print("| sparsity | dense step | masked-dense: step, speed vs dense | truly sparse: step, speed vs dense |\n| -: | -: | :- | :- |")
    t0 = time.perf_counter()
    rs = [compare(s, args, dev, x, y) for s in args.sparsities]
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end, {time.perf_counter() - t0:.0f} s")
    print("gpt2_stack: truly sparse training step vs dense (median of rounds): " + ', '.join(f"{s:.0%} {r:.2f}x" for s, r in zip(args.sparsities, rs)))

if __name__ == '__main__': main()
