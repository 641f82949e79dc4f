"Smoke-run every benchmark script in its quick mode (no timing assertions: the numbers of a quick run mean nothing)"
import subprocess, sys
from pathlib import Path
import pytest

BENCH = sorted(p for p in (Path(__file__).resolve().parents[1]/'bench').glob('*.py') if p.name != 'common.py')

@pytest.mark.parametrize('script', BENCH, ids=[p.stem for p in BENCH])
def test_bench_quick(script):
    r = subprocess.run([sys.executable, str(script), '--quick', '--device', 'cpu'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith(script.stem), line
