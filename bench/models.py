"Real client models sparsified 90 % (ERK): the layers masked by type, what stays dense, exact per-layer counts after RigL updates through the wrapper, the layers truly_sparse converts, and one training step truly sparse / masked-dense against dense"
import sys, copy, os, time, warnings
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from common import parser, setup, timeit, machine, median
from fastsparse.core import sparsify_model, erdos_renyi_sparsity, masked_params, shared_weights, linear_spec, sparseable_types
from fastsparse.sparse_linear import truly_sparse, TrulySparseLinear
from fastsparse.wrapper import DynamicSparseTrainingOptimizerWrapper
from fastsparse.schedule import RigL_presets

def _lm_batch(vocab, bs, seq, gen):
    ids = torch.randint(0, vocab, (bs, seq), generator=gen)
    return ids, ids

def gpt2(quick):
    "HF GPT2LMHeadModel, random init: 2 blocks, width 256, 4 heads, vocabulary 1,000"
    from transformers import GPT2Config, GPT2LMHeadModel
    d, v, t = (64, 100, 16) if quick else (256, 1000, 128)
    cfg = GPT2Config(n_layer=2, n_embd=d, n_head=4, vocab_size=v, n_positions=t, attn_pdrop=0., resid_pdrop=0., embd_pdrop=0., bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg), 'lm', (v, t)

def bert(quick):
    "HF BertForMaskedLM, random init: 2 layers, width 256, 4 heads, MLP 1,024, vocabulary 1,000"
    from transformers import BertConfig, BertForMaskedLM
    cfg = BertConfig(vocab_size=1000, hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=1024, max_position_embeddings=128,
                     hidden_dropout_prob=0., attention_probs_dropout_prob=0.)
    return BertForMaskedLM(cfg), 'lm', (1000, 128)

def vit_tiny(quick):
    "timm vit_tiny_patch16_224, pretrained=False (12 blocks, width 192), built for 112-pixel images"
    import timm
    return timm.create_model('vit_tiny_patch16_224', pretrained=False, img_size=112), 'img', (3, 112, 112)

def resnet50(quick):
    "torchvision resnet50(weights=None)"
    import torchvision
    return torchvision.models.resnet50(weights=None), 'img', (3, 32, 32) if quick else (3, 64, 64)

def vit_b_16(quick):
    "torchvision vit_b_16(weights=None), built for 64-pixel images (image_size=64: 16 patches)"
    import torchvision
    return torchvision.models.vit_b_16(weights=None, image_size=64), 'img', (3, 64, 64)

MODELS = dict(gpt2=gpt2, bert=bert, vit_tiny=vit_tiny, resnet50=resnet50, vit_b_16=vit_b_16)
NEEDS = dict(gpt2='transformers', bert='transformers', vit_tiny='timm', resnet50='torchvision', vit_b_16='torchvision')
TITLE = dict(gpt2='HF GPT2LMHeadModel', bert='HF BertForMaskedLM', vit_tiny='timm vit_tiny_patch16_224', resnet50='torchvision resnet50', vit_b_16='torchvision vit_b_16')

def batch(kind, shape, bs, gen):
    "(input, target) of a batch of `bs`: token ids (labels = ids) for language models, images and classes for image models"
    if kind == 'lm': return _lm_batch(shape[0], bs, shape[1], gen)
    return torch.randn(bs, *shape, generator=gen), torch.randint(0, 1000, (bs,), generator=gen)

def loss(model, kind, x, y):
    if kind == 'lm': return model(x, labels=y).loss
    return nn.functional.cross_entropy(model(x), y)

def fmt(c:Counter)->str:
    "`Type×n (why)` items of a Counter of `Type` or `(Type, why)` keys (`name (why)` for a named layer), most frequent first"
    def item(k, v):
        t, why = (k, '') if isinstance(k, str) else k
        return f"{t}{f'×{v}' if v > 1 or t[:1].isupper() else ''}{f' ({why})' if why else ''}"  # a count of a type; a named layer once
    return ', '.join(item(k, v) for k, v in sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0])))) or 'none'

def dense_layers(model)->str:
    "The weights of 2 or more dimensions that got no mask, grouped by why"
    masked = {id(m) for m, n in masked_params(model)}
    tied = {k: v for k, v in shared_weights(model).items()}
    tied_names = {n for v in tied.values() for n in v}
    why = Counter()
    for name, m in model.named_modules():
        ps = [(k, p) for k, p in m.named_parameters(recurse=False) if p.dim() >= 2]
        if not ps or id(m) in masked: continue
        full = [f"{name}.{k}".lstrip('.') for k, p in ps]
        if any(f in tied_names for f in full) and not isinstance(m, nn.Embedding):
            other = [o for f in full for v in tied.values() if f in v for o in v if o != f]
            why[(name, f"tied to {', '.join(other)}: dense as the embedding")] += 1
        elif isinstance(m, nn.Embedding): why[('Embedding', 'embeddings stay dense')] += 1
        elif isinstance(m, sparseable_types) or linear_spec(m) is not None: why[(name, f"a {type(m).__name__}: ERK density 1, a small layer")] += 1
        else:
            for f in full: why[(f, 'a parameter outside layers')] += 1
    return fmt(why)

def left_masked(model)->str:
    "The masked layers that `truly_sparse` left masked-dense, with why"
    mha = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    why = Counter()
    for m, n in masked_params(model):
        if isinstance(m, nn.MultiheadAttention): why[('MultiheadAttention', 'reads its in_proj_weight itself')] += 1
        elif id(m) in mha: why[(f"{type(m).__name__} out_proj", 'MultiheadAttention reads its weight')] += 1
        elif isinstance(m, nn.modules.conv._ConvNd): why[(type(m).__name__, 'convolutions stay masked')] += 1
        else: why[(type(m).__name__, 'not converted')] += 1
    return fmt(why)

def counts(model)->list[int]:
    "Active weights per sparse layer, in module order: mask sums of masked layers, stored values of truly sparse ones"
    out = []
    for m in model.modules():
        if isinstance(m, TrulySparseLinear): out.append(m.values.numel())
        out += [int(b.sum()) for k, b in m.named_buffers(recurse=False) if k.endswith('_mask')]
    return out

def masked_zero(model)->bool:
    return all(not (getattr(m, n)[~getattr(m, n + '_mask')] != 0).any() for m, n in masked_params(model))

def rigl_check(model, kind, shape, steps, gen)->tuple[bool, int, int]:
    "(counts exact and masked weights 0 after every step, updates done, layers) for `steps` AdamW steps with a RigL update every step until 75 % through the wrapper"
    so = DynamicSparseTrainingOptimizerWrapper(model, torch.optim.AdamW(model.parameters(), lr=1e-3), batches_per_update=1, total_steps=steps, seed=0, **RigL_presets)
    c0, ok = counts(model), True
    for _ in range(steps):
        x, y = batch(kind, shape, 2, gen)
        loss(model, kind, x, y).backward(); so.step(); so.zero_grad()
        ok = ok and counts(model) == c0 and masked_zero(model)
    return ok, so.n_updates, len(c0)

class Stepper:
    "AdamW training steps of one model on one batch"
    def __init__(self, model, kind, x, y):
        self.model, self.kind, self.x, self.y = model, kind, x, y
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    def __call__(self):
        self.opt.zero_grad(); loss(self.model, self.kind, self.x, self.y).backward(); self.opt.step()

def time_steps(models, kind, x, y, rounds, n, dev):
    "Per-round seconds per step of each model (rounds alternating, the order rotating every round)"
    steppers = {k: Stepper(m, kind, x, y) for k, m in models.items()}
    for s in steppers.values(): s()
    res, keys = {k: [] for k in models}, list(models)
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]: res[k].append(timeit(steppers[k], dev, n))
    return res

def spread(xs): return f"{median(xs):.2f}× ({min(xs):.2f}–{max(xs):.2f})"

def sparse_pair(name, quick=False, dev='cpu'):
    "(model sparsified 90 % ERK, its truly sparse copy, kind, input shape) of model `name`"
    torch.manual_seed(0)
    model, kind, shape = MODELS[name](quick)
    model = model.to(dev)
    sparsify_model(model, 0.9, sparse_f=erdos_renyi_sparsity)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # a tied sparse head would warn that it stays masked: the table says what stays masked
        ts = truly_sparse(copy.deepcopy(model))
    return model, ts, kind, shape

def structure_rows(name, model, ts)->list[str]:
    "The model's rows of the two structure tables: (layers masked by type, left dense and why), (converted by `truly_sparse`, left masked-dense and why)"
    names = {n for n, m in ts.named_modules() if isinstance(m, TrulySparseLinear)}
    converted = Counter(type(m).__name__ for n, m in model.named_modules() if n in names)
    masked = Counter(type(m).__name__ for m, n in masked_params(model))
    return [f"| {TITLE[name]} | {fmt(masked)} | {dense_layers(model)} |", f"| {TITLE[name]} | {fmt(converted)} | {left_masked(ts)} |"]

def run(name, args, dev, rows):
    model, ts, kind, shape = sparse_pair(name, args.quick, dev)
    gen = torch.Generator().manual_seed(0)
    steps = 2 if args.quick else 6
    ok_m, up_m, n_layers = rigl_check(copy.deepcopy(model), kind, shape, steps, gen)
    ok_t, up_t, _ = rigl_check(copy.deepcopy(ts), kind, shape, steps, gen)
    dense = MODELS[name](args.quick)[0].to(dev)
    dense.load_state_dict(model.state_dict(), strict=False)
    x, y = batch(kind, shape, args.bs, gen)
    res = time_steps(dict(dense=dense, masked=model, sparse=ts), kind, x, y, args.rounds, args.steps, dev)
    r_m = [d / m for d, m in zip(res['dense'], res['masked'])]; r_t = [d / s for d, s in zip(res['dense'], res['sparse'])]
    inp = f"{args.bs}×{shape[1]} tokens" if kind == 'lm' else f"{args.bs}×{'×'.join(map(str, shape))}"
    a, b = structure_rows(name, model, ts); rows['struct'].append(a); rows['convert'].append(b)
    ex = lambda ok, up: f"{'exact' if ok else '**NOT exact**'} ({up} updates)"
    rows['rigl'].append(f"| {TITLE[name]} | {n_layers} | {ex(ok_m, up_m)} | {ex(ok_t, up_t)} |")
    rows['time'].append(f"| {TITLE[name]} | {inp} | {1e3 * median(res['dense']):.0f} ms | {1e3 * median(res['masked']):.0f} ms, {spread(r_m)} | "
                        f"{1e3 * median(res['sparse']):.0f} ms, {spread(r_t)} |")
    print(f"  {name} done", file=sys.stderr, flush=True)
    return ok_m and ok_t, median(r_t)

def main():
    p = parser(__doc__)
    p.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    p.add_argument('--rounds', type=int, default=5, help="alternating timing rounds per model")
    p.add_argument('--steps', type=int, default=2, help="training steps per model per round")
    p.add_argument('--bs', type=int, default=8, help="batch size of the timed steps")
    args = p.parse_args(); dev = setup(args)
    if args.quick: args.models, args.rounds, args.steps, args.bs = [m for m in ['gpt2', 'resnet50'] if m in args.models], 1, 1, 2
    avail = []
    for m in args.models:
        try: __import__(NEEDS[m]); avail.append(m)
        except ImportError: print(f"{m}: skipped, {NEEDS[m]} is not installed (pip install 'fastsparse[hf]')")
    try:
        import transformers; transformers.logging.set_verbosity_error()
    except ImportError: pass
    warnings.filterwarnings('ignore', category=FutureWarning)
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine(dev)}, load average {os.getloadavg()[0]:.2f} at start; "
          f"sparsify_model(model, 0.9, sparse_f=erdos_renyi_sparsity); timing: AdamW steps (forward, backward, step), {args.rounds} alternating rounds "
          f"of {args.steps} steps per variant, ratio = dense step time / variant's, median of the per-round ratios (min–max)\n")
    rows = dict(struct=[], convert=[], rigl=[], time=[])
    t0, oks, rs = time.perf_counter(), [], []
    for m in avail:
        ok, r = run(m, args, dev, rows); oks.append(ok); rs.append(r)
    print("| model | masked by `sparsify_model` | left dense |\n| :- | :- | :- |")
    print('\n'.join(rows['struct']))
    print("\n| model | converted by `truly_sparse` | left masked-dense by `truly_sparse` |\n| :- | :- | :- |")
    print('\n'.join(rows['convert']))
    print("\n| model | sparse layers | per-layer active counts after every RigL step, masked | truly sparse |\n| :- | -: | :- | :- |")
    print('\n'.join(rows['rigl']))
    print("\n| model | input (batch) | dense step | masked-dense: step, speed vs dense | truly sparse: step, speed vs dense |\n| :- | :- | -: | :- | :- |")
    print('\n'.join(rows['time']))
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end, {time.perf_counter() - t0:.0f} s\n")
    print(f"models: {len(avail)} models, counts exact after RigL updates: {all(oks)}; truly sparse step vs dense (median per model): "
          + ', '.join(f"{m} {r:.2f}x" for m, r in zip(avail, rs)))
    if not all(oks): sys.exit(1)

if __name__ == '__main__': main()
