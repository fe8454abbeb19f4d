"""pytest-benchmark suite of the SEG workload (definition: benchmarks/workloads.py; front end: benchmarks/suite.py)."""
from benchmarks.suite import suite_tests

WORKLOAD = "SEG"
test_checks, test_timing = suite_tests(WORKLOAD)
