"""pytest-benchmark suite of the GRASS workload (definition: benchmarks/workloads.py; front end: benchmarks/suite.py)."""
from benchmarks.suite import suite_tests

WORKLOAD = "GRASS"
test_checks, test_timing = suite_tests(WORKLOAD)
