#!/usr/bin/env bash
# One command for every benchmark: bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m bench "$@"
