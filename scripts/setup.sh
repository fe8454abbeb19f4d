#!/usr/bin/env bash
# Create (or reuse) a virtual environment in .venv and install latentfast into it, building the native
# extension against the installed torch.  Used by the README's quick start and by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LATENTFAST_VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# Pinned: this exact version is the CPU wheel; an open range can pull a multi-GB CUDA build.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q numpy pillow matplotlib tqdm pytest scipy hypothesis pytest-benchmark triton pybind11 "setuptools>=64" wheel
"$VENV/bin/python" -m pip install -q --no-build-isolation -e .
"$VENV/bin/python" -m latentfast.info
