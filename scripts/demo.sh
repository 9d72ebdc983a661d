#!/usr/bin/env bash
# The README's demo command: installs what it needs, then runs the demo on the embedded
# Flink mini-cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m flink_dl.cli.main demo "$@"
