#!/usr/bin/env bash
# The README's demo command: installs what it needs, then trains a digits classifier with
# 2 PyTorch workers on the embedded Flink mini-cluster and runs batch inference with it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python examples/digits.py "$@"
