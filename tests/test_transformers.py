"Transformers as users build them: HF GPT-2 (Conv1D layers, head tied to the embedding), HF BERT for masked LM, timm ViT (tiny random-init configs)"
import copy, os, tempfile, warnings
import pytest
import torch
from torch import nn
from fastsparse import *

transformers = pytest.importorskip('transformers', reason="the HF tests need the `hf` extra: pip install 'fastsparse[hf]'")
from transformers import GPT2Config, GPT2LMHeadModel, BertConfig, BertForMaskedLM
from transformers.pytorch_utils import Conv1D
transformers.logging.set_verbosity_error()

def _gpt2(seed=0):
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=64, attn_pdrop=0., resid_pdrop=0., embd_pdrop=0.,
                     bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg)

def _bert(seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                     hidden_dropout_prob=0., attention_probs_dropout_prob=0.)
    return BertForMaskedLM(cfg)

_blocks = [f'transformer.h.{i}.{n}' for i in range(2) for n in ('attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj')]

def _masked_zero(model):
    return all(not (w[~m] != 0).any() for w, m in zip(*weights_and_masks(model)))

def _train(model, so, steps, seed=0, check=None):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(0, 100, (4, 16), generator=g)
        model(ids, labels=ids).loss.backward(); so.step(); so.zero_grad()
        if check: check()

def test_gpt2_masks_every_conv1d_and_leaves_the_tied_head_dense():
    m = _gpt2(); sparsify_model(m, 0.9, sparse_f=erdos_renyi_sparsity)
    names = {id(x): n for n, x in m.named_modules()}
    test = [(names[id(x)], type(x)) for x, n in masked_params(m)]
    assert test == [(n, Conv1D) for n in _blocks]
    assert not hasattr(m.lm_head, 'weight_mask') and not hasattr(m.transformer.wte, 'weight_mask')
    assert m.lm_head.weight is m.transformer.wte.weight
    ws = [w for w, _ in zip(*weights_and_masks(m))]
    twin = erdos_renyi_sparsity([w.t() for w in ws], 0.9)  # the nn.Linear layout of the same layers: ER(K) agrees
    assert [x.weight_sparsity for x, n in masked_params(m)] == pytest.approx(twin)
    rows = {r['layer']: r for r in sparse_report(m, flops_input=torch.zeros(2, 16, dtype=torch.long))}
    r = rows['transformer.h.0.mlp.c_fc.weight']
    assert r['shape'] == (64, 256) and r['dense_flops'] == 32 * 64 * 256 and r['sparse_flops'] == 32 * r['active']
    assert rows['lm_head.weight']['density'] == 1 and 'transformer.wte.weight' not in rows

def test_gpt2_sparse_kaiming_uses_conv1d_fan_in():
    m = _gpt2(); sparsify_model(m, 0.9, weight_init='sparse_kaiming', generator=torch.Generator().manual_seed(0))
    l = m.transformer.h[0].mlp.c_proj  # weight (in=256, out=64): fan-in 256, not 64
    d = l.weight_mask.float().mean().item()
    assert l.weight[l.weight_mask].std().item() == pytest.approx((2 / (256 * d)) ** 0.5, rel=0.06)

@pytest.mark.parametrize('preset', ['rigl', 'set'])
def test_gpt2_updates_keep_exact_counts(preset):
    m = _gpt2(); sparsify_model(m, 0.9, sparse_f=erdos_renyi_sparsity)
    masks0 = [k.clone() for k in weights_and_masks(m)[1]]
    so = DynamicSparseTrainingOptimizerWrapper(m, torch.optim.AdamW(m.parameters(), lr=1e-3), batches_per_update=2, total_steps=6, seed=0,
                                               **(RigL_presets if preset == 'rigl' else SET_presets))
    b0 = so.engine.budgets()
    _train(m, so, 6, check=lambda: (so.engine.budgets() == b0 and _masked_zero(m)) or pytest.fail('counts or masked weights wrong'))
    assert so.n_updates == 2 and so.engine.budgets() == [k.sum().item() for k in masks0]
    assert any(not torch.equal(a, b) for a, b in zip(masks0, weights_and_masks(m)[1]))  # the topology moved
    assert m.lm_head.weight is m.transformer.wte.weight

def test_gpt2_tied_sparse_one_mask_tie_kept():
    m = _gpt2(); sparsify_model(m, 0.9, sparse_f=erdos_renyi_sparsity, tied='sparse')
    keys = [k for k in m.state_dict() if k.endswith('_mask')]
    assert keys == [f'{n}.weight_mask' for n in _blocks] + ['lm_head.weight_mask']
    assert m.lm_head.weight is m.transformer.wte.weight
    total = sum(w.numel() for w in weights_and_masks(m)[0])
    assert total == sum(x.weight.numel() for x, n in masked_params(m)) and sum(k.sum().item() for k in weights_and_masks(m)[1]) == n_active(total, 0.9)  # the tied weight counted once
    ids = torch.randint(0, 100, (3, 7))
    assert torch.equal(m.transformer.wte(ids), (m.lm_head.weight * m.lm_head.weight_mask)[ids])  # the embedding looks up the masked weight
    so = DynamicSparseTrainingOptimizerWrapper(m, torch.optim.Adam(m.parameters(), lr=1e-3), batches_per_update=2, total_steps=6, seed=0, **RigL_presets)
    b0 = so.engine.budgets()
    _train(m, so, 6)
    assert so.engine.budgets() == b0 and _masked_zero(m) and m.lm_head.weight is m.transformer.wte.weight
    assert list(so.state_dict()['masks']) == keys

@pytest.mark.parametrize('tied', ['dense', 'sparse'])
def test_gpt2_save_pretrained_round_trip(tied):
    safetensors = pytest.importorskip('safetensors')
    from safetensors.torch import load_file, save_model
    m = _gpt2(); sparsify_model(m, 0.9, sparse_f=erdos_renyi_sparsity, tied=tied)
    so = DynamicSparseTrainingOptimizerWrapper(m, torch.optim.Adam(m.parameters(), lr=1e-3), batches_per_update=2, total_steps=4, seed=0, **SET_presets)
    _train(m, so, 4)
    with tempfile.TemporaryDirectory() as d:
        m.save_pretrained(d, safe_serialization=True)  # no shared-tensor error: each mask is one key
        saved = load_file(os.path.join(d, 'model.safetensors'))
        assert sorted(k for k in saved if k.endswith('_mask')) == sorted(k for k in m.state_dict() if k.endswith('_mask'))
        m2 = GPT2LMHeadModel.from_pretrained(d)  # a dense model: the weights (zeros included) come back; restoring masks is another call's job
        for k, v in m2.state_dict().items(): assert torch.equal(v, m.state_dict()[k]), k
        assert m2.lm_head.weight is m2.transformer.wte.weight
        save_model(m, os.path.join(d, 'plain.safetensors'))

def test_gpt2_truly_sparse_matches_masked_twin_then_trains():
    m = _gpt2(); sparsify_model(m, 0.9, sparse_f=erdos_renyi_sparsity)
    ts = truly_sparse(copy.deepcopy(m))
    assert [n for n, x in ts.named_modules() if isinstance(x, TrulySparseLinear)] == _blocks
    assert ts.lm_head.weight is ts.transformer.wte.weight
    ids = torch.randint(0, 100, (3, 12))
    a, b = m(ids, labels=ids), ts(ids, labels=ids)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-4)
    a.loss.backward(); b.loss.backward()
    tsd = dict(ts.named_modules())
    for n in _blocks:  # weight gradients at the active positions (the (out, in) weight's, row-major), bias gradients
        src, dst = m.get_submodule(n), tsd[n]
        torch.testing.assert_close(src.weight.grad.t()[src.weight_mask.t()], dst.values.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(src.bias.grad, dst.bias.grad, atol=1e-5, rtol=1e-4)
    for (k, p), q in zip(m.named_parameters(), [dict(ts.named_parameters()).get(k) for k, _ in m.named_parameters()]):
        if q is not None: torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4)  # embeddings, norms: the same gradients
    ts.zero_grad()
    hf = _gpt2(1).state_dict(); ts2 = copy.deepcopy(ts); ts2.load_state_dict(hf)  # an HF checkpoint loads into the converted model
    twin = copy.deepcopy(m); twin.load_state_dict(hf, strict=False)
    torch.testing.assert_close(ts2(ids).logits, twin(ids).logits, atol=1e-5, rtol=1e-4)
    so = DynamicSparseTrainingOptimizerWrapper(ts, torch.optim.AdamW(ts.parameters(), lr=1e-3), batches_per_update=2, total_steps=8, seed=0, **RigL_presets)
    b0 = so.engine.budgets()
    _train(ts, so, 8)
    assert so.n_updates == 2 and so.engine.budgets() == b0
    back = masked_dense(copy.deepcopy(ts))
    assert [type(back.get_submodule(n)) for n in _blocks] == [Conv1D] * 8 and back.transformer.h[0].attn.c_attn.weight.shape == (64, 192)
    torch.testing.assert_close(back(ids).logits, ts(ids).logits, atol=1e-5, rtol=1e-4)
    with tempfile.TemporaryDirectory() as d:  # converted back, the model saves in HF's format again
        back.save_pretrained(d); m3 = GPT2LMHeadModel.from_pretrained(d)
        torch.testing.assert_close(m3(ids).logits, ts(ids).logits, atol=1e-5, rtol=1e-4)
    sp = export_sparse(m)
    assert [n for n, x in sp.named_modules() if isinstance(x, TrulySparseLinear)] == _blocks
    torch.testing.assert_close(sp(ids).logits, m.eval()(ids).logits, atol=1e-5, rtol=1e-4)

def test_gpt2_tied_sparse_truly_sparse_keeps_the_tie():
    m = _gpt2(); sparsify_model(m, 0.9, sparse_f=erdos_renyi_sparsity, tied='sparse')
    with pytest.warns(UserWarning, match=r"`lm_head.weight` is also used by \['transformer.wte.weight'\].*stay masked-dense"): truly_sparse(m)
    assert type(m.lm_head) is nn.Linear and m.lm_head.weight is m.transformer.wte.weight and len(truly_sparse_layers(m)) == 8
    with pytest.raises(TypeError, match=r"`lm_head.weight` is also used by \['transformer.wte.weight'\].*untie"): truly_sparse(m, modules=[m.lm_head])
    so = DynamicSparseTrainingOptimizerWrapper(m, torch.optim.AdamW(m.parameters(), lr=1e-3), batches_per_update=2, total_steps=6, seed=0, **SET_presets)
    b0 = so.engine.budgets()
    _train(m, so, 6)  # the optimizer made after conversion holds no replaced weight: no error
    assert so.engine.budgets() == b0 and _masked_zero(m)

def test_bert_masked_lm_decoder_tie():
    b = _bert()
    assert shared_weights(b)['bert.embeddings.word_embeddings.weight'] == ['bert.embeddings.word_embeddings.weight', 'cls.predictions.decoder.weight']
    d = copy.deepcopy(b); sparsify_model(d, 0.9)
    assert len(masked_params(d)) == 13 and not hasattr(d.cls.predictions.decoder, 'weight_mask')  # 12 encoder Linear + the MLM transform
    ts = truly_sparse(copy.deepcopy(d))
    assert len(truly_sparse_layers(ts)) == 13
    ids = torch.randint(0, 100, (2, 10)); d.eval(); ts.eval()
    torch.testing.assert_close(d(ids).logits, ts(ids).logits, atol=1e-5, rtol=1e-4)
    s = copy.deepcopy(b); sparsify_model(s, 0.9, tied='sparse')
    assert [k for k in s.state_dict() if k.endswith('_mask') and 'decoder' in k] == ['cls.predictions.decoder.weight_mask']
    assert s.cls.predictions.decoder.weight is s.bert.embeddings.word_embeddings.weight
    with pytest.warns(UserWarning, match=r"decoder.weight` is also used by \['bert.embeddings.word_embeddings.weight'\]"): truly_sparse(s)
    assert type(s.cls.predictions.decoder) is nn.Linear and len(truly_sparse_layers(s)) == 13
    assert s.cls.predictions.decoder.bias is s.cls.predictions.bias  # the tied bias too
    so = DynamicSparseTrainingOptimizerWrapper(s, torch.optim.AdamW(s.parameters(), lr=1e-3), batches_per_update=2, total_steps=6, seed=0, **RigL_presets)
    b0 = so.engine.budgets()
    _train(s, so, 6)
    assert so.engine.budgets() == b0 and _masked_zero(s)

def test_timm_vit_linear_layers_convert():
    timm = pytest.importorskip('timm', reason="the timm test needs the `hf` extra: pip install 'fastsparse[hf]'")
    torch.manual_seed(0)
    v = timm.create_model('vit_tiny_patch16_224', pretrained=False, img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10)
    sparsify_model(v, 0.9, sparse_f=erdos_renyi_sparsity)
    assert sorted(type(x).__name__ for x, n in masked_params(v)) == ['Conv2d'] + ['Linear'] * 9
    ts = truly_sparse(copy.deepcopy(v))
    assert len(truly_sparse_layers(ts)) == 9 and type(ts.patch_embed.proj) is nn.Conv2d  # 4 per block + head; the patch convolution stays masked
    x = torch.randn(4, 3, 32, 32); v.eval(); ts.eval()
    torch.testing.assert_close(v(x), ts(x), atol=1e-5, rtol=1e-4)
    ts.train()
    so = DynamicSparseTrainingOptimizerWrapper(ts, torch.optim.AdamW(ts.parameters(), lr=1e-3), batches_per_update=2, total_steps=6, seed=0, **RigL_presets)
    b0 = so.engine.budgets()
    for _ in range(6): nn.functional.cross_entropy(ts(x), torch.arange(4)).backward(); so.step(); so.zero_grad()
    assert so.n_updates == 2 and so.engine.budgets() == b0
