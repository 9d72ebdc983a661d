"""Baselines run as plain processes: free ports, start them all, wait, read their reports."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (all bound at once, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_all(commands: list[list[str]], env: dict[str, str], what: str,
            timeout_s: float = 600) -> None:
    """Start every command at once and wait for them all; one that exits non-zero raises
    ``RuntimeError`` naming ``what``, and those still running are then killed."""
    procs = [subprocess.Popen(command, env=env) for command in commands]
    try:
        for proc in procs:
            if proc.wait(timeout=timeout_s):
                raise RuntimeError(f"{what} exited with {proc.returncode}")
    finally:
        for proc in procs:
            proc.kill()


def read_reports(paths: list[str]) -> list[dict]:
    """The JSON report each process wrote."""
    return [json.loads(Path(path).read_text()) for path in paths]
