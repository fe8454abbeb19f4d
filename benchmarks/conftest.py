"""pytest options and parametrization for the benchmark suites (see benchmarks/suite.py)."""
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks` importable when run from anywhere


def pytest_addoption(parser):
    g = parser.getgroup("latentfast benchmarks")
    g.addoption("--bench-size", default="full", choices=("full", "quick"),
                help="workload sizes of benchmarks/workloads.py SIZES (quick: CI-sized, seconds)")
    g.addoption("--bench-device", default="auto", help="auto (CUDA when present), cpu or cuda")


def _collected(config, module):
    from benchmarks import suite

    device = suite.resolve_device(config.getoption("--bench-device"))
    return suite.collect(module.WORKLOAD, config.getoption("--bench-size"), device)


def pytest_generate_tests(metafunc):
    if "bench_case" in metafunc.fixturenames:
        cases = _collected(metafunc.config, metafunc.module)["cases"]
        ids = [re.sub(r"[^A-Za-z0-9_.=+-]+", "_", c["name"]).strip("_") for c in cases]
        metafunc.parametrize("bench_case", cases, ids=ids)


@pytest.fixture
def bench_collected(request):
    return _collected(request.config, request.module)
