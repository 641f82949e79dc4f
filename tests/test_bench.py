"Smoke-run every benchmark script in its quick mode (no timing assertions: the numbers of a quick run mean nothing)"
import subprocess, sys
from pathlib import Path
import pytest

BENCH = sorted(p for p in (Path(__file__).resolve().parents[1]/'bench').glob('*.py') if p.name != 'common.py')
EXTRA = {'overhead': [['--model', 'lenet5']], 'update': [['--model', 'mlp'], ['--model', 'lenet5']]}  # the other models of the README table
RUNS = [(p, []) for p in BENCH] + [(p, e) for p in BENCH for e in EXTRA.get(p.stem, [])]

@pytest.mark.parametrize('script,extra', RUNS, ids=[' '.join([p.stem, *e]) for p, e in RUNS])
def test_bench_quick(script, extra):
    r = subprocess.run([sys.executable, str(script), '--quick', '--device', 'cpu', *extra], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith(script.stem), line
