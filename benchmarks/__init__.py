"""latentfast benchmarks: the official codes' approach side by side with latentfast (issue 6).

Run ``python -m benchmarks [--quick] [--only LB,SEG] [--out DIR]``; ``benchmarks.run.main(argv)`` is the same
entry point for ``latentfast bench``.  The same workloads (workloads.py) run as pytest-benchmark suites:
``pytest benchmarks/ --benchmark-only [--bench-size quick]`` (see suite.py).  Not part of the installed package: latentfast never imports it.
"""
