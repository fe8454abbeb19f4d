"""Every ```python block of README.md runs as written (in order, in one fresh interpreter, in an empty
directory), so the README cannot drift from the API (issue 10)."""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(text: str):
    return [m.group(1) for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M)]


def test_the_readme_has_python_blocks():
    assert len(python_blocks((ROOT / "README.md").read_text())) >= 2


@pytest.mark.slow
def test_every_readme_python_block_runs(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text())
    runner = textwrap.dedent("""
        import sys, time
        blocks = eval(sys.stdin.read())
        env = {"__name__": "__main__"}
        for i, code in enumerate(blocks):
            t0 = time.perf_counter()
            exec(compile(code, f"README.md python block {i + 1}", "exec"), env)
            print(f"block {i + 1}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), LATENTFAST_QUIET="1")
    r = subprocess.run([sys.executable, "-c", runner], input=repr(blocks), cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    print(r.stderr)
