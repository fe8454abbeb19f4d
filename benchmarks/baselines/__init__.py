"""Re-implementations of the official codes' hot paths, written for these benchmarks (no code copied).

Each module's docstring names the repository, file and function it follows, and every deviation from it.
"""
