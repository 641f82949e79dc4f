"The Hugging Face Trainer runs static/SET/SNFS/RigL (gradient accumulation, exact budgets, masked weights 0 after every step, RigL's skipped steps, no update in evaluation), resumes bit-identically from its checkpoints, and save_pretrained/from_pretrained keep the masks (tiny random-init BERT and GPT-2 on CPU)"
import math
import pytest, torch
transformers = pytest.importorskip('transformers')
from transformers import (BertConfig, BertForMaskedLM, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback,
                          TrainingArguments)
from fastsparse import sparsify_model, erdos_renyi_sparsity, weights_and_masks, masked_params, truly_sparse, truly_sparse_layers, DynamicSparseTrainingOptimizerWrapper, RigL_presets, SET_presets
from fastsparse.hf import sparsify_trainer, find_sparse_wrapper, DynamicSparseTrainerCallback, load_masks, sparse_from_pretrained

transformers.logging.set_verbosity_error()
STEPS, EVERY = 12, 3  # optimizer steps of a run, steps between updates: updates at steps 3 and 6 (9 is at stop_pct = 75 %)

@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)  # tiny models: threads only add noise on a shared machine
    yield
    torch.set_num_threads(n)

def bert(cls=BertForMaskedLM, seed=0, **kw):
    "A random-init BERT small enough for CPU tests (dropout on: a resumed run must get the Trainer's RNG state back)"
    torch.manual_seed(seed)
    return cls(BertConfig(**{**dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                    max_position_embeddings=32), **kw}))

def gpt2(seed=0):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=32))

def data(n=48, seq=16, seed=0, labels='tokens'):
    g = torch.Generator().manual_seed(seed)
    return [dict(input_ids=r, labels=r if labels == 'tokens' else int(r[0] % 2)) for r in torch.randint(0, 100, (n, seq), generator=g)]

def args(out, **kw):
    return TrainingArguments(str(out), **{**dict(per_device_train_batch_size=4, gradient_accumulation_steps=2, learning_rate=3e-3, max_steps=STEPS,
                                                 report_to=[], use_cpu=True, disable_tqdm=True, logging_strategy='no', save_strategy='no'), **kw})

def expected_updates(total, every, stop_pct):
    return sum(1 for t in range(1, total) if t % every == 0 and t / total < stop_pct)

class Probe(TrainerCallback):
    "After every optimizer step: masked weights are 0, gradients zeroed, every layer's active count, and a snapshot; at every evaluation: nothing moved"
    def __init__(self): self.steps, self.evals, self.snap = [], [], None
    def on_step_end(self, args, state, control, model=None, optimizer=None, **kw):
        ws, ms = weights_and_masks(model)
        so = find_sparse_wrapper(optimizer)
        self.steps.append(dict(step=state.global_step, zero=all(not w[~m].any() for w, m in zip(ws, ms)), counts=[int(m.sum()) for m in ms],
                               no_grad=all(p.grad is None or not p.grad.any() for p in model.parameters()),
                               n_updates=so.n_updates if so else 0, n_step=so.n_step if so else state.global_step, prev=self.snap,
                               now=_snapshot(model)))
        self.snap = self.steps[-1]['now']
    def on_evaluate(self, args, state, control, model=None, optimizer=None, **kw):
        so = find_sparse_wrapper(optimizer)
        self.evals.append(dict(same=all(torch.equal(a, b) for a, b in zip(self.snap.values(), _snapshot(model).values())),
                               counts=(so.n_step, so.n_updates) if so else (state.global_step, 0), last=(self.steps[-1]['n_step'], self.steps[-1]['n_updates'])))

def _snapshot(model): return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}

@pytest.mark.parametrize('method', ['static', 'set', 'snfs', 'rigl'])
def test_methods_in_trainer(tmp_path, method):
    model = bert()
    probe = Probe()
    tr = Trainer(model=model, args=args(tmp_path, eval_strategy='steps', eval_steps=4), train_dataset=data(), eval_dataset=data(8, seed=1), callbacks=[probe])
    kw = {} if method == 'static' else dict(batches_per_update=EVERY, seed=0)
    sparsify_trainer(tr, 0.9, method, sparse_f=erdos_renyi_sparsity, **kw)
    b0, m0 = [int(m.sum()) for m in weights_and_masks(model)[1]], [m.clone() for m in weights_and_masks(model)[1]]
    tr.train()
    so = find_sparse_wrapper(tr.optimizer)
    assert len(probe.steps) == STEPS and all(s['zero'] and s['no_grad'] for s in probe.steps)  # masked weights 0 and gradients zeroed after every step
    if method == 'snfs': assert all(sum(s['counts']) == sum(b0) for s in probe.steps)  # SNFS moves budget between layers, keeping the total
    else: assert all(s['counts'] == b0 for s in probe.steps)  # exact per-layer budgets after every step
    assert len(probe.evals) == STEPS // 4 and all(e['same'] and e['counts'] == e['last'] for e in probe.evals)  # evaluation neither moves nor counts
    if method == 'static':
        assert so is None and all(torch.equal(m, m_) for m, m_ in zip(weights_and_masks(model)[1], m0))
        return
    n = expected_updates(STEPS, EVERY, so.schedule.stop_pct)
    assert (so.n_step, so.n_updates, so.total_steps) == (STEPS, n, tr.state.max_steps) and n == 2
    assert [h['step'] for h in so.schedule.history] == [3, 6] and all(h['dropped'] > 0 for h in so.schedule.history)
    steps_taken = {int(st['step']) for st in so.opt.state.values()}
    assert steps_taken == ({STEPS - n} if method == 'rigl' else {STEPS})  # RigL skips the optimizer step of each update step
    if method == 'rigl':
        mask_of = _mask_names(model)
        for h in so.schedule.history:  # on an update step nothing moved but the topology: dropped weights set to 0, grown ones still 0
            s = probe.steps[h['step']]
            for k, v in s['now'].items():
                if k.endswith('_mask'): continue
                want = s['prev'][k] * s['now'][mask_of[k]] if k in mask_of else s['prev'][k]
                assert torch.equal(v, want), (h['step'], k)

def _mask_names(model)->dict[str, str]:
    "State-dict name of each masked weight (every name of a tied one) -> the name of its mask"
    names, res = {id(m): n for n, m in model.named_modules()}, {}
    for m, n in masked_params(model):
        for pn, q in model.named_parameters(remove_duplicate=False):
            if q is getattr(m, n): res[pn] = f"{names[id(m)]}.{n}_mask".lstrip('.')
    return res

def test_by_hand_with_own_scheduler(tmp_path):
    "The documented long form: the wrapper in `optimizers=` with an LR scheduler on the inner optimizer, and the callback"
    model = bert(BertForSequenceClassification, num_labels=2)
    sparsify_model(model, 0.8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    so = DynamicSparseTrainingOptimizerWrapper(model, opt, batches_per_update=EVERY, total_steps=1000, seed=0, **SET_presets)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1 - t / STEPS)
    tr = Trainer(model=model, args=args(tmp_path), train_dataset=data(labels='class'), optimizers=(so, sched), callbacks=[DynamicSparseTrainerCallback()])
    tr.train()
    assert (so.n_step, so.n_updates, so.total_steps) == (STEPS, 2, STEPS)  # the Trainer's max_steps replaced the wrapper's total_steps
    assert sched.last_epoch == STEPS and opt.param_groups[0]['lr'] == 0.

def test_sparsify_trainer_wraps_hf_optimizer(tmp_path):
    model = bert()
    tr = sparsify_trainer(Trainer(model=model, args=args(tmp_path, weight_decay=0.01)), 0.9, 'set', batches_per_update=5)
    so = find_sparse_wrapper(tr.optimizer)
    assert isinstance(so.opt, torch.optim.AdamW) and [g['weight_decay'] for g in so.param_groups] == [0.01, 0.]  # HF's own decay / no-decay groups
    assert so.param_groups[0]['lr'] == 3e-3 and so.schedule.batches_per_update == 5 and so.engine.grow_score_f.__name__ == 'random_score'
    assert sum(isinstance(c, DynamicSparseTrainerCallback) for c in tr.callback_handler.callbacks) == 1
    with pytest.raises(ValueError, match='already'): sparsify_trainer(tr, method='rigl')
    with pytest.raises(TypeError, match='static'): sparsify_trainer(Trainer(model=bert(), args=args(tmp_path)), 0.9, 'static', seed=0)

def _resume_case(kind):
    "(model builder, sparsify, wrapper preset, dataset) of a resume case"
    if kind == 'rigl-truly_sparse':
        def build(seed):
            m = bert(BertForSequenceClassification, seed=seed, num_labels=2)
            sparsify_model(m, 0.9, generator=torch.Generator().manual_seed(seed))
            return truly_sparse(m)
        return build, RigL_presets, data(labels='class')
    def build(seed):
        m = bert(seed=seed)
        sparsify_model(m, 0.9, sparse_f=erdos_renyi_sparsity, generator=torch.Generator().manual_seed(seed))
        return m
    return build, (SET_presets if kind == 'set-masked' else RigL_presets), data()

def _run(tmp_path, kind, seed, resume=None, **kw):
    build, preset, ds = _resume_case(kind)
    model = build(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)  # after truly_sparse: the optimizer holds the values
    so = DynamicSparseTrainingOptimizerWrapper(model, opt, batches_per_update=EVERY, seed=seed, **preset)
    tr = Trainer(model=model, args=args(tmp_path, **kw), train_dataset=ds, optimizers=(so, None), callbacks=[DynamicSparseTrainerCallback()])
    tr.train(resume_from_checkpoint=resume)
    return model, so

@pytest.mark.parametrize('kind', ['set-masked', 'rigl-masked', 'rigl-truly_sparse'])
def test_resume_bit_identical(tmp_path, kind):
    "A run stopped at its checkpoint after step 6 (the next step updates) and resumed in a model built with other masks, weights and seed ends as the uninterrupted run"
    full, so_full = _run(tmp_path/'full', kind, 0, save_strategy='steps', save_steps=6)  # its checkpoint-6 is what a run interrupted there leaves
    ckpt = tmp_path/'full'/'checkpoint-6'
    res, so_res = _run(tmp_path/'res', kind, 1, resume=str(ckpt))
    assert (so_res.n_step, so_res.n_updates, so_res.schedule.history) == (so_full.n_step, so_full.n_updates, so_full.schedule.history) == (STEPS, 2, so_full.schedule.history)
    assert torch.equal(so_res.engine.generator.get_state(), so_full.engine.generator.get_state())
    sd_full, sd_res = full.state_dict(), res.state_dict()
    assert sd_full.keys() == sd_res.keys()
    for k in sd_full: assert torch.equal(sd_full[k], sd_res[k]), k
    if kind == 'rigl-truly_sparse': assert len(truly_sparse_layers(res)) == 14  # 2 x 6 per block, pooler, classifier

def test_resume_needs_optimizer_state(tmp_path):
    _run(tmp_path/'a', 'set-masked', 0, save_strategy='steps', save_steps=6, save_only_model=True, max_steps=6)
    with pytest.raises(RuntimeError, match='optimizer.pt'): _run(tmp_path/'b', 'set-masked', 0, resume=str(tmp_path/'a'/'checkpoint-6'))

def test_gpt2_what_sparsify_model_masks_today(tmp_path):
    "GPT-2 through the Trainer: whatever `sparsify_model` masks (until HF Conv1D is a sparse layer: only `lm_head`, tied to the embedding) keeps exact budgets, and survives save/from_pretrained"
    model = gpt2()
    probe = Probe()
    tr = Trainer(model=model, args=args(tmp_path), train_dataset=data(), callbacks=[probe])
    sparsify_trainer(tr, 0.9, 'rigl', batches_per_update=EVERY, seed=0)
    b0 = [int(m.sum()) for m in weights_and_masks(model)[1]]
    assert b0
    tr.train()
    so = find_sparse_wrapper(tr.optimizer)
    assert so.n_updates == 2 and all(s['zero'] and s['counts'] == b0 for s in probe.steps)
    assert model.lm_head.weight is model.transformer.wte.weight  # the tie holds
    model.save_pretrained(tmp_path/'saved')
    loaded = sparse_from_pretrained(GPT2LMHeadModel, tmp_path/'saved')
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    for (w, m), (w2, m2) in zip(zip(*weights_and_masks(model)), zip(*weights_and_masks(loaded))): assert torch.equal(m, m2) and torch.equal(w, w2)
    x = torch.randint(0, 100, (2, 16)); model.eval(); loaded.eval()
    assert torch.equal(model(input_ids=x).logits, loaded(input_ids=x).logits)

def test_load_masks_formats(tmp_path):
    "A .bin checkpoint (transformers 4's save_safetensors=False), a Trainer checkpoint, masks into a model with another head (base-model prefix), masks replacing existing ones"
    model = bert()
    sparsify_model(model, 0.9)
    d = tmp_path/'bin'; d.mkdir()
    torch.save(model.state_dict(), d/'pytorch_model.bin')
    loaded = load_masks(bert(seed=1), d)
    for m, m2 in zip(weights_and_masks(model)[1], weights_and_masks(loaded)[1]): assert torch.equal(m, m2)
    model.save_pretrained(tmp_path/'st')
    base = load_masks(transformers.BertModel.from_pretrained(tmp_path/'st'), tmp_path/'st')  # keys 'bert.encoder...' into a model without the 'bert.' prefix
    assert len(masked_params(base)) == sum(n.startswith('bert.') for n, _ in model.named_buffers() if n.endswith('_mask'))  # the MLM head's are not in BertModel (its pooler stays dense)
    assert torch.equal(base.encoder.layer[1].output.dense.weight_mask, model.bert.encoder.layer[1].output.dense.weight_mask)
    auto = sparse_from_pretrained(transformers.AutoModelForMaskedLM, tmp_path/'st')  # an Auto class builds the concrete model
    assert type(auto) is BertForMaskedLM and all(torch.equal(m, m2) for m, m2 in zip(weights_and_masks(model)[1], weights_and_masks(auto)[1]))
    other = bert(seed=2); sparsify_model(other, 0.5)
    load_masks(other, tmp_path/'st')
    for m, m2 in zip(weights_and_masks(model)[1], weights_and_masks(other)[1]): assert torch.equal(m, m2)
    assert all(abs(getattr(m, f'{n}_sparsity') - (1 - int(getattr(m, f'{n}_mask').sum()) / getattr(m, n).numel())) < 1e-12 for m, n in masked_params(other))
    for w, m in zip(*weights_and_masks(other)): assert not w[~m].any()

def test_load_masks_from_hub_cache(tmp_path, monkeypatch):
    "A Hub repo id resolves through the Hugging Face cache (here a local one, offline), sharded checkpoints included"
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    model = bert()
    sparsify_model(model, 0.9)
    snap = tmp_path/'cache'/'models--fastsparse--tiny-bert'/'snapshots'/('0' * 40)
    model.save_pretrained(snap, max_shard_size='30KB')
    (snap.parents[1]/'refs').mkdir(); (snap.parents[1]/'refs'/'main').write_text('0' * 40)
    assert (snap/'model.safetensors.index.json').exists()
    loaded = sparse_from_pretrained(BertForMaskedLM, 'fastsparse/tiny-bert', cache_dir=tmp_path/'cache', local_files_only=True)
    for m, m2 in zip(weights_and_masks(model)[1], weights_and_masks(loaded)[1]): assert torch.equal(m, m2)
    with pytest.raises(FileNotFoundError, match='Hub repo'): load_masks(bert(), 'fastsparse/no-such-model', cache_dir=tmp_path/'cache', local_files_only=True)

def test_ddp_ranks_agree(tmp_path):
    "Two CPU processes (torchrun, gloo): SET and RigL through the Trainer under DDP end with identical masks and weights on both ranks"
    import os, socket, subprocess, sys
    from pathlib import Path
    with socket.socket() as sk: sk.bind(('127.0.0.1', 0)); port = sk.getsockname()[1]  # torchrun's --master_port 0 hangs its static rendezvous
    script = Path(__file__).parent/'hf_ddp_script.py'
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parents[1]) + os.pathsep + os.environ.get('PYTHONPATH', ''), 'OMP_NUM_THREADS': '1'}
    res = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', str(port), str(script), str(tmp_path)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    for method in ('set', 'rigl'):
        a, b = (torch.load(tmp_path/f'{method}_{r}.pt', weights_only=True) for r in (0, 1))
        assert a['world'] == 2 and a['counts'] == b['counts'] == (STEPS, 2) and a['changed']
        assert all(torch.equal(x, y) for x, y in zip(a['masks'], b['masks']))
        assert a['state'].keys() == b['state'].keys() and all(torch.equal(a['state'][k], b['state'][k]) for k in a['state'])

def test_load_best_model_at_end(tmp_path):
    "The best checkpoint's masks come back with its weights: the final model is that checkpoint, at budget"
    model = bert()
    tr = Trainer(model=model, args=args(tmp_path, eval_strategy='steps', eval_steps=3, save_strategy='steps', save_steps=3, load_best_model_at_end=True,
                                        metric_for_best_model='eval_loss', greater_is_better=True),  # the worst loss wins: rarely the last checkpoint
                 train_dataset=data(), eval_dataset=data(8, seed=1))
    sparsify_trainer(tr, 0.9, 'rigl', batches_per_update=EVERY, seed=0)
    b0 = [int(m.sum()) for m in weights_and_masks(model)[1]]
    tr.train()
    best = load_masks(bert(seed=3), tr.state.best_model_checkpoint)
    assert tr.state.best_model_checkpoint.endswith('checkpoint-3')  # before the first update: its masks differ from the last ones
    for (w, m), (w2, m2) in zip(zip(*weights_and_masks(model)), zip(*weights_and_masks(best))): assert torch.equal(m, m2) and not w[~m].any()
    assert [int(m.sum()) for m in weights_and_masks(model)[1]] == b0
