"The command line: `fastsparse replicate --quick` (the CI smoke run of the replication grid) and `fastsparse train` on an image folder"
import json, subprocess, sys
from pathlib import Path

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
