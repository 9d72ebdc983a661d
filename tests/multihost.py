"""Test hosts on one machine: network namespaces behind a private switch (needs root).

    with TestHosts(["jm", "tm1", "tm2"]) as hosts:
        jm = hosts["jm"]
        proc = jm.popen(["java", "-version"])        # runs "on" jm: its netns, /tmp, hostname
        hosts["tm1"].run([sys.executable, "-c", "..."]).check_returncode()

Layout (nothing is added to the root namespace; no route leads out of the test network):

* a *switch* namespace ``fdl-<uid>-sw`` with a bridge ``br0`` and one veth end per host;
* one namespace per host, ``fdl-<uid>-<name>``, with ``lo`` up and ``eth0`` (the other veth
  end) at ``10.213.0.<11+i>/24``; no default route, so every address outside
  10.213.0.0/24 is unreachable (``ENETUNREACH``) and the root namespace is invisible;
* per host, an *anchor* process (``sleep infinity``) owning a private mount namespace and
  UTS namespace: tmpfs on ``/tmp`` and ``/dev/shm``, an ``/etc/hosts`` naming every test
  host (bind mounted from a file unlinked at once: nothing is written to the real
  filesystem) and the hostname ``fdl-<uid>-<name>``. Every ``popen``/``run`` enters the
  anchor's net, mount and UTS namespaces (``nsenter``), so all processes of one host share
  its ``/tmp``, and ``/tmp`` of different hosts (and of the root) are disjoint. The rest of
  the filesystem (the repo, the venv, Java) is the machine's own.

``uid`` is ``<owner pid>-<4 hex>``: ``cleanup_stale()`` removes test networks whose owner
process is gone (a crashed run), or every ``fdl-*`` one with ``force=True``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

SUBNET = "10.213.0"
PREFIX_LEN = 24
FIRST_HOST = 11
NS_PREFIX = "fdl-"
_NS_RE = re.compile(r"^fdl-(\d+)-([0-9a-f]{4})-([a-z0-9]+)$")

_ANCHOR_SCRIPT = r"""
set -e
# Paths under the machine's /tmp that every host must still see (a checkout there, its
# venv) are held aside (binds on a private tmpfs over /mnt) before /tmp is covered, then
# bound in again.
mount -t tmpfs -o mode=0700,size=1m fdl-keep /mnt
i=0
printf '%s\n' "$FDL_KEEP" | while IFS= read -r keep; do
  [ -n "$keep" ] || continue
  i=$((i + 1)); mkdir -p "/mnt/$i"; mount --bind "$keep" "/mnt/$i"
done
mount -t tmpfs -o mode=1777,size=2g fdl-tmp /tmp
i=0
printf '%s\n' "$FDL_KEEP" | while IFS= read -r keep; do
  [ -n "$keep" ] || continue
  i=$((i + 1)); mkdir -p "$keep"; mount --move "/mnt/$i" "$keep"
done
umount /mnt
mount -t tmpfs -o mode=1777,size=1g fdl-shm /dev/shm
printf '%s' "$FDL_HOSTS" > /tmp/.fdl-hosts
mount --bind /tmp/.fdl-hosts /etc/hosts
rm /tmp/.fdl-hosts
hostname "$FDL_HOSTNAME"
echo ready
exec sleep infinity
"""


def _under_tmp(path: str) -> bool:
    return path == "/tmp" or path.startswith("/tmp/")


def kept_under_tmp() -> list[str]:
    """The paths under the machine's ``/tmp`` that hosts still see: this checkout and the
    Python it runs (a CI clone may live in ``/tmp``); everything else there is private."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = {root, os.path.realpath(sys.prefix),
                  os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    kept = sorted(p for p in candidates if _under_tmp(p) and p != "/tmp")
    return [p for p in kept if not any(p.startswith(k + "/") for k in kept)]  # outermost


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def list_namespaces() -> list[str]:
    """Names of every network namespace (``ip netns list``)."""
    out = _ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def namespace_pids(ns: str) -> list[int]:
    """PIDs of the processes in network namespace ``ns`` (``ip netns pids``)."""
    proc = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def _kill_namespace(ns: str, grace_s: float = 3.0) -> None:
    """SIGTERM every process in ``ns``, SIGKILL what is left after ``grace_s``, then wait
    until none remains (a daemonized grandchild is in the namespace too)."""
    pids = namespace_pids(ns)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = namespace_pids(ns)
        if not pids:
            return
    raise RuntimeError(f"processes {pids} in namespace {ns} survived SIGKILL")


def _remove_namespace(ns: str) -> None:
    _kill_namespace(ns)
    _ip("netns", "del", ns, check=False)


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, dead but not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cleanup_stale(force: bool = False) -> list[str]:
    """Remove test networks left by earlier runs: namespaces ``fdl-<pid>-<hex>-<name>``
    whose owner ``pid`` is gone (every ``fdl-*`` namespace with ``force``). Returns the
    names removed."""
    removed = []
    for ns in list_namespaces():
        if not ns.startswith(NS_PREFIX):
            continue
        m = _NS_RE.match(ns)
        if not force and m and _pid_alive(int(m.group(1))):
            continue  # a live TestHosts of another process
        _remove_namespace(ns)
        removed.append(ns)
    return removed


@dataclass
class TestHost:
    """One test host: its network namespace, address, hostname and private /tmp."""

    name: str
    netns: str
    address: str
    hostname: str
    anchor: subprocess.Popen[str] | None = None
    procs: list[subprocess.Popen] = field(default_factory=list)

    __test__ = False  # not a pytest class

    def command(self, argv: Sequence[str], cwd: str | None = None) -> list[str]:
        """``argv`` wrapped to run on this host (its net, mount and UTS namespaces), in
        ``cwd`` (default: ours; entering a mount namespace would otherwise reset it to /)."""
        assert self.anchor is not None, "host not started"
        if cwd is None:
            cwd = os.getcwd()
            if _under_tmp(cwd) and not any(
                    cwd == k or cwd.startswith(k + "/") for k in kept_under_tmp()):
                cwd = "/"  # our /tmp is not the host's
        return ["nsenter", f"--target={self.anchor.pid}", "--net", "--mount", "--uts",
                f"--wd={os.path.abspath(cwd)}", "--", *argv]

    def popen(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
              **kwargs: object) -> subprocess.Popen:
        """Start ``argv`` on this host (own session); it is killed by ``__exit__``."""
        kwargs.setdefault("start_new_session", True)
        cwd = kwargs.pop("cwd", None)
        proc = subprocess.Popen(self.command(argv, cwd), env=dict(env) if env is not None else None,
                                **kwargs)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on this host to completion; stdout/stderr captured as text."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        cwd = kwargs.pop("cwd", None)
        return subprocess.run(self.command(argv, cwd), env=dict(env) if env is not None else None,
                              timeout=timeout, **kwargs)  # type: ignore[call-overload]

    def sh(self, script: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", script], **kwargs)  # type: ignore[arg-type]

    def pids(self) -> list[int]:
        """Every process now on this host (its network namespace)."""
        return namespace_pids(self.netns)


class TestHosts:
    """N test hosts (network namespaces behind a private bridge); see the module docstring.

    ``hosts[name]`` is a ``TestHost``; ``hosts.hosts_file`` is the ``/etc/hosts`` they see.
    ``__exit__`` kills every process on the hosts and removes all namespaces and links, also
    when the body raised (and ``__enter__`` undoes a partial set-up).
    """

    __test__ = False

    def __init__(self, names: Sequence[str] = ("jm", "tm1", "tm2"),
                 uid: str | None = None) -> None:
        if not names or len(set(names)) != len(names) or len(names) > 200:
            raise ValueError(f"need 1..200 distinct host names, got {names!r}")
        for n in names:
            if not re.fullmatch(r"[a-z0-9]{1,10}", n) or n == "sw":
                raise ValueError(f"host name {n!r}: use 1-10 of [a-z0-9], not 'sw'")
        self.uid = uid or f"{os.getpid()}-{secrets.token_hex(2)}"
        self.switch = f"{NS_PREFIX}{self.uid}-sw"
        self.hosts: dict[str, TestHost] = {}
        for i, n in enumerate(names):
            ns = f"{NS_PREFIX}{self.uid}-{n}"
            self.hosts[n] = TestHost(n, ns, f"{SUBNET}.{FIRST_HOST + i}", ns)
        self.hosts_file = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n" + "".join(
            f"{h.address} {h.hostname} {h.name}\n" for h in self.hosts.values())
        self.setup_s = self.teardown_s = 0.0

    def __getitem__(self, name: str) -> TestHost:
        return self.hosts[name]

    def __iter__(self) -> Iterator[TestHost]:
        return iter(self.hosts.values())

    @property
    def namespaces(self) -> list[str]:
        return [self.switch, *(h.netns for h in self.hosts.values())]

    # ------------------------------------------------------------------ set-up
    def __enter__(self) -> TestHosts:
        t0 = time.monotonic()
        try:
            self._create()
        except BaseException:
            self._teardown()
            raise
        self.setup_s = time.monotonic() - t0
        return self

    def _create(self) -> None:
        sw = self.switch
        _ip("netns", "add", sw)
        _ip("-n", sw, "link", "add", "br0", "type", "bridge", "stp_state", "0",
            "forward_delay", "0")
        _ip("-n", sw, "link", "set", "br0", "up")
        for h in self.hosts.values():
            _ip("netns", "add", h.netns)
            port = f"p-{h.name}"
            # The pair is created inside the switch namespace, its peer straight in the
            # host's: no link ever exists in the root namespace.
            _ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                "netns", h.netns)
            _ip("-n", sw, "link", "set", port, "master", "br0", "up")
            _ip("-n", h.netns, "link", "set", "lo", "up")
            _ip("-n", h.netns, "addr", "add", f"{h.address}/{PREFIX_LEN}", "dev", "eth0")
            _ip("-n", h.netns, "link", "set", "eth0", "up")
        for h in self.hosts.values():
            self._start_anchor(h)
        for h in self.hosts.values():
            line = h.anchor.stdout.readline() if h.anchor and h.anchor.stdout else ""
            if line.strip() != "ready":
                err = h.anchor.stderr.read() if h.anchor and h.anchor.stderr else ""
                raise RuntimeError(f"host {h.name}: anchor failed to start: {line!r} {err!r}")

    def _start_anchor(self, h: TestHost) -> None:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "FDL_HOSTS": self.hosts_file,
               "FDL_HOSTNAME": h.hostname, "FDL_KEEP": "\n".join(kept_under_tmp())}
        h.anchor = subprocess.Popen(
            ["ip", "netns", "exec", h.netns, "unshare", "--mount", "--uts",
             "--propagation", "private", "--", "sh", "-c", _ANCHOR_SCRIPT],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True)

    # ---------------------------------------------------------------- teardown
    def __exit__(self, *exc: object) -> None:
        self._teardown()

    def _teardown(self) -> None:
        t0 = time.monotonic()
        errors = []
        for ns in self.namespaces:
            try:
                _kill_namespace(ns)
            except RuntimeError as e:  # still delete the others
                errors.append(str(e))
        for h in self.hosts.values():
            for p in [*h.procs, *([h.anchor] if h.anchor else [])]:
                with contextlib.suppress(Exception):
                    p.wait(timeout=5)
                for stream in (p.stdout, p.stderr, p.stdin):
                    if stream:
                        stream.close()
        present = set(list_namespaces())
        for ns in self.namespaces:
            if ns in present:
                _ip("netns", "del", ns, check=False)
        self.teardown_s = time.monotonic() - t0
        if errors:
            raise RuntimeError("; ".join(errors))


# ---------------------------------------------------------------------- self-check
_PING = r"""
import os, socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
dst = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(1.0)
ident = os.getpid() & 0xFFFF
for seq in range(3):
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"fdl-ping"
    pkt = hdr[:2] + struct.pack("!H", csum(hdr)) + hdr[4:]
    try:
        s.sendto(pkt, (dst, 0))
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            data, addr = s.recvfrom(1500)
            icmp = data[(data[0] & 0x0F) * 4:]
            if addr[0] == dst and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                print("reply", dst, "%.2f ms" % ((time.monotonic() - t0) * 1000)); sys.exit(0)
    except OSError as e:
        print("error", dst, e); sys.exit(2)
print("timeout", dst); sys.exit(1)
"""

_CONNECT = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    socket.create_connection((host, port), timeout=2).close()
    print("connected")
except OSError as e:
    print("refused-or-unreachable", type(e).__name__, e.errno)
    sys.exit(1)
"""


def _self_check() -> int:
    results: list[tuple[bool, str]] = []

    def check(ok: bool, what: str) -> None:
        results.append((ok, what))
        print(f"{'PASS' if ok else 'FAIL'}: {what}", flush=True)

    py = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      ".venv", "bin", "python")
    if not os.path.exists(py):
        py = sys.executable
    stale = cleanup_stale()
    print(f"cleanup_stale removed {stale}")
    before = set(list_namespaces())
    root_addrs = [a for a in subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True
    ).stdout.split() if re.fullmatch(r"\d+\.\d+\.\d+\.\d+/\d+", a)]
    root_addrs = [a.split("/")[0] for a in root_addrs if not a.startswith("127.")]
    print(f"root namespace addresses: {root_addrs}")

    root_hostname = socket.gethostname()
    pids_seen: list[int] = []
    marker = f"/tmp/fdl-multihost-probe-{os.getpid()}"
    with TestHosts(["jm", "tm1", "tm2"]) as hosts:
        print(f"set-up of {len(hosts.hosts)} hosts + switch: {hosts.setup_s:.2f}s")
        jm, tm1, tm2 = hosts["jm"], hosts["tm1"], hosts["tm2"]
        for a, b in ((tm1, tm2), (tm2, jm), (jm, tm1)):
            r = a.run([py, "-c", _PING, b.address])
            check(r.returncode == 0, f"{a.name} pings {b.name} ({b.address}): "
                                     f"{r.stdout.strip() or r.stderr.strip()[-200:]}")
        # TCP across hosts, and loopback inside a host.
        server = tm2.popen([py, "-c", "import socket,time; s=socket.socket(); "
                            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                            "s.bind(('0.0.0.0', 47000)); s.listen(); time.sleep(60)"])
        time.sleep(1.0)
        r = tm1.run([py, "-c", _CONNECT, tm2.address, "47000"])
        check(r.returncode == 0, f"tm1 -> tm2:47000 TCP: {r.stdout.strip()}")
        r = tm2.run([py, "-c", _CONNECT, "127.0.0.1", "47000"])
        check(r.returncode == 0, f"tm2 loopback 127.0.0.1:47000 TCP: {r.stdout.strip()}")
        r = tm1.run([py, "-c", _CONNECT, "127.0.0.1", "47000"])
        check(r.returncode != 0, f"tm1's loopback is its own (no tm2 server there): "
                                 f"{r.stdout.strip()}")
        r = tm1.run([py, "-c", _CONNECT, "tm2", "47000"])
        check(r.returncode == 0, f"tm1 -> 'tm2' by name (/etc/hosts): {r.stdout.strip()}")
        for addr in [*root_addrs, "1.1.1.1", "10.213.1.1"]:
            r = tm1.run([py, "-c", _CONNECT, addr, "22"])
            check(r.returncode != 0 and "101" in r.stdout,
                  f"tm1 cannot reach {addr} outside the test network: {r.stdout.strip()}")
        root_links = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True,
                                    text=True).stdout
        check(SUBNET + "." not in root_links and "p-" not in root_links
              and "br0" not in root_links,
              "the root namespace has no link or address of the test network")
        server.kill()
        # Private /tmp.
        tm1.sh(f"echo hello > {marker}").check_returncode()
        check(tm1.sh(f"cat {marker}").stdout.strip() == "hello",
              "tm1 sees its own /tmp file from a second process")
        check(tm2.sh(f"test -e {marker}").returncode == 1 and jm.sh(f"test -e {marker}")
              .returncode == 1, "tm2 and jm do not see tm1's /tmp file")
        check(not os.path.exists(marker), "the root /tmp does not see tm1's /tmp file")
        tm1.sh("echo x > /dev/shm/fdl-probe").check_returncode()
        check(tm2.sh("test -e /dev/shm/fdl-probe").returncode == 1
              and not os.path.exists("/dev/shm/fdl-probe"), "/dev/shm is private per host")
        r = tm1.sh("grep ' /tmp ' /proc/self/mounts")
        check("tmpfs" in r.stdout, f"tm1 /tmp is a tmpfs: {r.stdout.strip()}")
        # Names.
        r = tm1.run([py, "-c", "import socket; h = socket.gethostname(); "
                     "print(h, socket.gethostbyname(h), socket.getfqdn())"])
        check(r.returncode == 0 and r.stdout.split()[:2] == [tm1.hostname, tm1.address],
              f"tm1 hostname resolves to its address: {r.stdout.strip()}")
        check(socket.gethostname() == root_hostname,
              f"root hostname unchanged ({root_hostname})")
        r = jm.run(["java", "-version"])
        check(r.returncode == 0, f"java runs on jm: {r.stderr.splitlines()[0] if r.stderr else ''}")
        r = jm.run([".venv/bin/python", "-c", "import socket, pyflink, flink_dl; "
                    "print(socket.gethostname())"],
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        check(r.returncode == 0 and r.stdout.strip() == jm.hostname,
              f"venv python (pyflink, flink_dl import) runs on jm: {r.stdout.strip()} "
              f"{r.stderr.strip()[-200:]}")
        # UDP-connect trick (route to the JobManager): the source address tm1 would use.
        r = tm1.run([py, "-c", "import socket; s = socket.socket(socket.AF_INET, "
                     f"socket.SOCK_DGRAM); s.connect(('{jm.address}', 6123)); "
                     "print(s.getsockname()[0])"])
        check(r.stdout.strip() == tm1.address,
              f"UDP connect() to jm + getsockname() on tm1 gives {r.stdout.strip()}")
        r = tm1.run([py, "-c", "import socket; s = socket.socket(socket.AF_INET, "
                     "socket.SOCK_DGRAM); s.connect(('8.8.8.8', 53))"])
        check(r.returncode != 0 and "Network is unreachable" in r.stderr,
              "UDP connect() to an outside address fails on tm1 (no default route)")
        # Background and daemonized processes, to be killed by __exit__.
        tm1.popen(["sleep", "1000"])
        tm2.popen(["sh", "-c", "nohup sleep 1001 >/dev/null 2>&1 &"])  # daemonized
        time.sleep(0.3)
        for h in hosts:
            pids_seen += h.pids()
        print(f"processes on the hosts before exit: {len(pids_seen)}")
        ours = hosts.namespaces
    print(f"teardown: {hosts.teardown_s:.2f}s")
    check(not set(ours) & set(list_namespaces()), "no namespaces of ours after __exit__")
    survivors = {p: _proc_state(p) for p in pids_seen if _pid_alive(p)}
    check(not survivors, f"no process of the hosts survives __exit__ {survivors}")
    check(set(list_namespaces()) == before - set(stale), "ip netns list is as before")

    # __exit__ when the body raises.
    try:
        with TestHosts(["a", "b"]) as failing:
            failing["a"].popen(["sh", "-c", "sleep 1002 & sleep 1003"])
            time.sleep(0.2)
            raised_pids = failing["a"].pids()
            raise KeyboardInterrupt("body failed")
    except KeyboardInterrupt:
        pass
    check(not set(failing.namespaces) & set(list_namespaces())
          and not [p for p in raised_pids if _pid_alive(p)],
          f"a raising body is cleaned up too ({len(raised_pids)} processes killed, "
          f"teardown {failing.teardown_s:.2f}s)")

    # cleanup_stale: a network whose owner died.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale_ns = f"{NS_PREFIX}{dead.pid}-beef-tm1"
    _ip("netns", "add", stale_ns)
    orphan = subprocess.Popen(["ip", "netns", "exec", stale_ns, "sleep", "1004"],
                              start_new_session=True)
    time.sleep(0.2)
    removed = cleanup_stale()
    orphan.wait(timeout=5)
    check(stale_ns in removed and stale_ns not in list_namespaces()
          and orphan.returncode is not None, f"cleanup_stale removes {stale_ns} and its "
                                             f"process (rc {orphan.returncode})")
    failed = [w for ok, w in results if not ok]
    print(f"{len(results) - len(failed)}/{len(results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_self_check())
