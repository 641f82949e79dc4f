"README.md and nbs/index.ipynb hold the same text; the quick-start commands are the ones CI runs"
import json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _index_text():
    nb = json.loads((ROOT/'nbs'/'index.ipynb').read_text())
    return '\n\n'.join(''.join(c['source']).strip() for c in nb['cells'] if c['cell_type'] == 'markdown')

def test_readme_matches_index():
    assert _index_text().strip() == (ROOT/'README.md').read_text().strip()

def test_ci_runs_readme_test_command():
    readme = (ROOT/'README.md').read_text()
    cmds = re.findall(r'```bash\n(.*?)\n```', readme.split('## Quick start')[1], flags=re.S)[:2]
    assert len(cmds) == 2
    assert cmds[1].strip() in (ROOT/'.ci'/'run').read_text()

def test_performance_page_is_readme_section():
    nb = json.loads((ROOT/'nbs'/'14_performance.ipynb').read_text())
    page = ''.join(nb['cells'][0]['source'])
    section = (ROOT/'README.md').read_text().split('## Performance', 1)[1].split('\n## ', 1)[0].strip()
    assert section in page
