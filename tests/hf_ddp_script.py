"Launched by tests/test_hf.py with torchrun (2 CPU processes, gloo): SET and RigL through the HF Trainer under DDP; each rank saves its masks, weights and counts"
import os, sys, tempfile
import torch, transformers
from transformers import BertConfig, BertForMaskedLM, Trainer, TrainingArguments
from fastsparse import weights_and_masks, erdos_renyi_sparsity
from fastsparse.hf import sparsify_trainer, find_sparse_wrapper

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)
out, rank = sys.argv[1], int(os.environ['RANK'])
g = torch.Generator().manual_seed(0)
ds = [dict(input_ids=r, labels=r) for r in torch.randint(0, 100, (48, 16), generator=g)]  # the same dataset on every rank: the Trainer shards it
for method in ('set', 'rigl'):
    torch.manual_seed(100 + rank)  # every rank starts from other weights: DDP broadcasts rank 0's, sparsify_trainer its masks, the wrapper a shared seed
    model = BertForMaskedLM(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=32))
    args = TrainingArguments(tempfile.mkdtemp(), per_device_train_batch_size=2, gradient_accumulation_steps=2, learning_rate=3e-3, max_steps=12,
                             report_to=[], use_cpu=True, disable_tqdm=True, logging_strategy='no', save_strategy='no', ddp_find_unused_parameters=False)
    tr = sparsify_trainer(Trainer(model=model, args=args, train_dataset=ds), 0.9, method, sparse_f=erdos_renyi_sparsity, batches_per_update=3)
    m0 = [m.clone() for m in weights_and_masks(model)[1]]
    tr.train()
    so = find_sparse_wrapper(tr.optimizer)
    torch.save(dict(world=tr.args.world_size, counts=(so.n_step, so.n_updates), masks=weights_and_masks(model)[1],
                    changed=any(not torch.equal(a, b) for a, b in zip(m0, weights_and_masks(model)[1])), state=model.state_dict()),
               os.path.join(out, f'{method}_{rank}.pt'))

import torch.distributed as dist
if dist.is_initialized(): dist.barrier(); dist.destroy_process_group()
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)  # gloo's teardown at interpreter exit can abort after all work is written (see tests/fastai_distrib_script.py)
