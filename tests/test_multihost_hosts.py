"""The multi-host test network itself (``tests/multihost.py``): hosts that reach each other
and nothing else, with a private ``/tmp`` each, torn down completely (needs root)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import multihost
from tests.multihost import TestHosts, cleanup_stale, list_namespaces

pytestmark = pytest.mark.multihost

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").is_dir() else sys.executable
CONNECT = multihost._CONNECT
PING = multihost._PING


def _root_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                         text=True).stdout
    return [a.split("/")[0] for a in re.findall(r"\d+\.\d+\.\d+\.\d+/\d+", out)
            if not a.startswith("127.")]


def test_hosts_reach_each_other_and_nothing_else() -> None:
    cleanup_stale()
    before = set(list_namespaces())
    with TestHosts(["jm", "tm1", "tm2"]) as hosts:
        jm, tm1, tm2 = hosts["jm"], hosts["tm1"], hosts["tm2"]
        assert len({h.address for h in hosts}) == 3
        for a, b in ((tm1, tm2), (tm2, jm), (jm, tm1)):
            ping = a.run([PYTHON, "-c", PING, b.address])
            assert ping.returncode == 0, (a.name, b.name, ping.stdout, ping.stderr)
        server = tm2.popen([PYTHON, "-c", "import socket, time; s = socket.socket(); "
                            "s.bind(('0.0.0.0', 47000)); s.listen(); time.sleep(60)"])
        deadline = time.monotonic() + 10
        while tm1.run([PYTHON, "-c", CONNECT, tm2.address, "47000"]).returncode != 0:
            assert time.monotonic() < deadline, "tm2's server never became reachable"
            time.sleep(0.2)
        assert tm1.run([PYTHON, "-c", CONNECT, "tm2", "47000"]).returncode == 0  # by name
        assert tm1.run([PYTHON, "-c", CONNECT, "127.0.0.1", "47000"]).returncode != 0
        for outside in [*_root_addresses(), "10.213.1.1"]:
            attempt = tm1.run([PYTHON, "-c", CONNECT, outside, "22"])
            assert attempt.returncode != 0 and "101" in attempt.stdout, (outside, attempt)
        root_links = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True,
                                    text=True).stdout
        assert multihost.SUBNET + "." not in root_links
        server.kill()
        names = tm1.run([PYTHON, "-c", "import socket; h = socket.gethostname(); "
                         "print(h, socket.gethostbyname(h))"])
        assert names.stdout.split() == [tm1.hostname, tm1.address]
        assert socket.gethostname() != tm1.hostname
        ours = hosts.namespaces
        pids = [p for h in hosts for p in h.pids()]
    assert not set(ours) & set(list_namespaces())
    assert not [p for p in pids if multihost._pid_alive(p)]
    assert set(list_namespaces()) == before


def test_each_host_has_a_private_tmp_and_a_failing_body_is_cleaned_up() -> None:
    marker = f"/tmp/fdl-multihost-{os.getpid()}"
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="body failed"), \
            TestHosts(["a", "b"]) as hosts:
        a, b = hosts["a"], hosts["b"]
        a.sh(f"echo hello > {marker}").check_returncode()
        assert a.sh(f"cat {marker}").stdout.strip() == "hello"  # a second process on a
        assert b.sh(f"test -e {marker}").returncode == 1
        assert not os.path.exists(marker)
        a.sh("echo x > /dev/shm/fdl-probe").check_returncode()
        assert b.sh("test -e /dev/shm/fdl-probe").returncode == 1
        a.popen(["sh", "-c", "sleep 1002 & sleep 1003"])
        time.sleep(0.3)
        pids = a.pids()
        namespaces = hosts.namespaces
        raise RuntimeError("body failed")
    assert pids and not [p for p in pids if multihost._pid_alive(p)]
    assert not set(namespaces) & set(list_namespaces())
