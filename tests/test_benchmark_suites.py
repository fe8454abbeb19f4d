"""CI run of the pytest-benchmark suites (benchmarks/test_*.py) in quick mode: pytest-benchmark's
``--benchmark-disable`` runs each benchmarked callable once, so this checks correctness and that every workload
puts the official approach and latentfast in its benchmark table — no time is measured or asserted."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("lb", "iter", "seg", "fit", "grass")


def test_benchmark_suites_quick_mode():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "pytest", "benchmarks/", "--benchmark-disable", "--bench-size", "quick",
           "--bench-device", "cpu", "-v", "-p", "no:cacheprovider", "-o", "addopts="]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    passed = re.findall(r"benchmarks/test_(\w+)\.py::(test_\w+)(?:\[(.*?)\])? PASSED", out.stdout)
    for w in WORKLOADS:
        mine = [(t, case) for f, t, case in passed if f == w]
        assert ("test_checks", "") in mine, (w, out.stdout[-3000:])
        cases = [case for t, case in mine if t == "test_timing"]
        assert any(c.startswith("baseline") for c in cases), (w, cases)
        assert any(c.startswith("latentfast") for c in cases), (w, cases)
