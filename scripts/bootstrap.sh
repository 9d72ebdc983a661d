#!/usr/bin/env bash
# Create/refresh the project's virtual environment in .venv (idempotent, offline-friendly:
# everything comes from the package registries; torch 2.13.0 CPU comes from a local wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[flink-dl] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.flink-dl-installed
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[flink-dl] installing dependencies into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and exactly pinned, so nothing pulls a CUDA build from the registry.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[dev]"
  .venv/bin/python -m pip check
  echo "$want" > "$stamp"
fi
command -v java >/dev/null 2>&1 || { echo "[flink-dl] Java 17 is required (java not on PATH)" >&2; exit 1; }
# The JVM class archive (a one-off, ~40 s; a no-op when it exists): PyFlink's gateway JVM
# maps Flink's classes from it instead of loading them from the jars, which cuts start-up.
.venv/bin/flink-dl jvm-archive >/dev/null 2>&1 || echo "[flink-dl] warning: the JVM class archive was not built (Flink starts slower); see: .venv/bin/flink-dl jvm-archive" >&2
