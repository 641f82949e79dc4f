"Run under `torchrun --nproc_per_node 2`: fastai distrib_ctx(cpu=True) with the callback; each rank writes its checksums"
import os, sys, json
from functools import partial
from pathlib import Path
import torch
from torch import nn
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import SGD
from fastai.distributed import *
from fastsparse import sparsify_model, erdos_renyi_sparsity, weights_and_masks, DynamicSparseTrainingCallback, SET_presets, RigL_presets
from fastsparse.data import digits_dls

out, method = Path(sys.argv[1]), sys.argv[2]
rank = int(os.environ['RANK'])
torch.set_num_threads(1)
torch.manual_seed(100 + rank)  # ranks seeded differently on purpose
learn = Learner(digits_dls(bs=32, seed=0), nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
                loss_func=CrossEntropyLossFlat(), opt_func=partial(SGD, mom=0.9))
with learn.distrib_ctx(cpu=True):
    sparsify_model(learn, 0.9, sparse_f=erdos_renyi_sparsity)  # the process group exists: masks are broadcast from rank 0
    dst = DynamicSparseTrainingCallback(**dict(SET=SET_presets, RigL=RigL_presets)[method], batches_per_update=4)
    m0 = [m.clone() for m in weights_and_masks(learn.model)[1]]
    with learn.no_bar(), learn.no_logging(): learn.fit(2, 0.05, cbs=dst)
ws, ms = weights_and_masks(learn.model)
(out/f'{method}_{rank}.json').write_text(json.dumps(dict(
    masks=[int((m.flatten().nonzero().squeeze(1) * 7 + 1).sum()) for m in ms], weights=[float(w.double().sum()) for w in ws],
    n_updates=dst.n_updates, changed=any(not torch.equal(a, b) for a, b in zip(m0, ms)))))

# All work is done and written. torch's gloo teardown at interpreter exit sometimes aborts the process afterwards ("terminate called
# without an active exception", SIGABRT; about 1 run in 8 here, with this repository's code of 5a0b465 as well as now): leave without
# running the C++ static destructors, after the process group is gone and the streams are flushed.
if torch.distributed.is_initialized(): torch.distributed.destroy_process_group()
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)
