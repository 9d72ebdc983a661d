#!/usr/bin/env bash
# The README's test command: installs what it needs, lints, then runs the whole suite
# (unit tests, real Flink jobs on the mini-cluster, and a real standalone cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
