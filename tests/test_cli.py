"The command line: `fastsparse replicate --quick` (the CI smoke run of the replication grid), `fastsparse train` on an image folder, `--truly-sparse`, and a ViT with AdamW"
import json, subprocess, sys
from pathlib import Path
from fastsparse.core import n_active

def test_replicate_quick(tmp_path):
    r = subprocess.run(['fastsparse', 'replicate', '--quick', '--out', str(tmp_path)], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = [json.loads(l) for l in (tmp_path/'runs.jsonl').read_text().splitlines()]
    assert len(runs) == 11 and {r['method_label'] for r in runs} == {'dense', 'static', 'set', 'snfs', 'snfs-noredist', 'rigl'}
    for r in runs:
        if r['method'] != 'dense': assert abs(r['mean_density'] - (1 - r['sparsity'])) < 1e-4
    assert {p.name for p in tmp_path.iterdir()} >= {'summary.csv', 'summary.json', 'summary.md', 'lenet300_2ep.png'}
    assert '| lenet300 | 2 | 99.0% |' in (tmp_path/'summary.md').read_text()

def test_train_on_image_folder(fmnist_folder, tmp_path):
    out = tmp_path/'r.json'
    r = subprocess.run(['fastsparse', 'train', '--method', 'rigl', '--data', str(fmnist_folder), '--epochs', '2', '--bs', '16',
                        '--batches-per-update', '5', '--no-dense', '--json-out', str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())[0]
    assert res['n_updates'] > 0 and list(res['layers'][0]['shape']) == [300, 3 * 28 * 28]
    assert 'rigl lenet300' in r.stdout and 'density' in r.stdout

def test_train_truly_sparse(tmp_path):
    out = tmp_path/'r.json'
    r = subprocess.run(['fastsparse', 'train', '--method', 'set', '--truly-sparse', '--sparsity', '0.9', '--epochs', '2',
                        '--batches-per-update', '10', '--no-dense', '--json-out', str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())[0]
    assert res['truly_sparse'] and res['n_updates'] > 0 and abs(res['mean_density'] - 0.1) < 1e-4
    assert sum(l['active'] for l in res['layers']) == n_active(sum(l['numel'] for l in res['layers']), 0.9)
    assert 'set (truly sparse) lenet300' in r.stdout
    r = subprocess.run(['fastsparse', 'train', '--method', 'snfs', '--truly-sparse', '--epochs', '1'], capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and 'SNFS grows by the momentum' in r.stderr and 'dense' not in r.stdout

def test_train_vit_adamw(tmp_path):
    out = tmp_path/'r.json'
    r = subprocess.run(['fastsparse', 'train', '--model', 'vit', '--opt', 'adamw', '--wd', '0.05', '--lr', '0.002', '--method', 'rigl', '--truly-sparse',
                        '--epochs', '1', '--batches-per-update', '5', '--no-dense', '--json-out', str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())[0]
    assert res['opt'] == 'adamw' and res['truly_sparse'] and res['n_updates'] > 0 and len(res['layers']) == 18
    assert sum(l['active'] for l in res['layers']) == n_active(sum(l['numel'] for l in res['layers']), 0.9)
    assert 'rigl (truly sparse) vit' in r.stdout
    r = subprocess.run(['fastsparse', 'train', '--opt', 'adam'], capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and 'adamw' in r.stderr
