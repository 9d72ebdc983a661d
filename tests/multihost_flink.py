"""A real multi-host Flink cluster on this machine: one JobManager host and N TaskManager
hosts, each a test host of ``tests/multihost.py`` (network namespace, private ``/tmp`` and
``/dev/shm``, own hostname; needs root).

    with TestHosts(["jm", "tm1", "tm2"]) as hosts, FlinkHosts(hosts) as flink:
        out = shared_dir("my-test")                   # a dir every host sees (not /tmp!)
        proc = flink.submit("tests/jobs/where_job.py", "--out", str(out))
        assert proc.returncode == 0, proc.stdout + proc.stderr + flink.log_tails()
        (job_id,) = job_ids(proc.stdout)
        {v["host"] for v in flink.job_vertices(job_id)}   # -> {"tm1", "tm2"}
        flink.kill_host_processes("tm1"); flink.restart_tm("tm1")
    # or, in one go: ``with flink_cluster(tms=("tm1", "tm2"), slots=2) as flink: ...``

A module-scoped pytest fixture can share one cluster between tests: ``ensure_started()``
restarts it (after a test that called ``stop()``), ``stop()`` is idempotent.

What each host runs (all through ``host.popen``, in the foreground: daemonized JVMs would
become zombies here, as PID 1 does not reap, and ``start-cluster.sh`` needs ssh):

* the JM host: ``jobmanager.sh start-foreground``; the ``flink run`` client of ``submit``
  and every REST query (``rest``) run there too, as the root namespace cannot reach the
  test network;
* each TM host: ``taskmanager.sh start-foreground``; its Python workers are its children.

Per host, under its private ``/tmp/fdl-flink/``: ``conf/`` (a copy of the wheel's conf dir
whose ``config.yaml`` is edited, see ``FlinkHosts.config``), ``log/`` (``FLINK_LOG_DIR``:
the JVM's ``.log``, and with ``STD_REDIRECT_TO_FILE`` its ``.out``/``.err``, plus
``console.txt`` with what the start scripts print) and ``pids/`` (``FLINK_PID_DIR``).
The name does not start with ``flink-dl-``, so ``leftovers`` never reports it.

Conf keys set (the wheel's ``config.yaml`` has ``localhost`` everywhere):

* ``jobmanager.rpc.address``, ``rest.address``: the JM host's address (10.213.0.x);
* ``jobmanager.bind-host``, ``taskmanager.bind-host``, ``rest.bind-address``: ``0.0.0.0``;
* ``taskmanager.host``: the host's own address (what REST reports per subtask);
* ``taskmanager.numberOfTaskSlots``: ``slots``; JM process 1024m, TM process 1280m (as
  ``StandaloneCluster``);
* ``python.executable``, ``python.client.executable``: this venv's python (its ``bin`` is
  also first on ``PATH``; ``PYTHONPATH`` has the checkout so workers import ``tests.*``);
* ``heartbeat.interval`` 2000 ms, ``heartbeat.timeout`` 10000 ms: a killed TaskManager is
  declared lost after ~10 s instead of 50 s;
* no restart strategy (each job sets its own); ``conf_overrides`` win over all of these.

Output that tests read back must go to a dir that every host sees: ``/tmp`` (and so
pytest's ``tmp_path``) is private per host. ``shared_dir()`` makes one under the checkout's
``.flink-dl-work/`` (git-ignored; visible on every host, also when the checkout is under
``/tmp``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from flink_dl.flink.standalone import flink_home, set_conf_key
from flink_dl.startup.client_env import LOOPBACK_LEFTOVERS
from tests.multihost import TestHost, TestHosts, _pid_alive

ROOT = Path(__file__).resolve().parent.parent
#: The Python of this venv: the client, the JVM start scripts and the Python workers.
PYTHON = sys.executable
#: Each host's Flink dir (inside its private /tmp).
BASE = "/tmp/fdl-flink"
REST_PORT = 8081
#: Default heartbeat settings (ms): a killed TaskManager is noticed within ~10 s.
HEARTBEAT_INTERVAL_MS = 2000
HEARTBEAT_TIMEOUT_MS = 10000

# Environment that must not reach the cluster's processes: a loopback job of this process
# leaves PyFlink worker parameters behind (see StandaloneCluster.env), a TMPDIR would lead
# every host to one shared temp dir, HOSTNAME would name the hosts' log files after ours.
_DROP_ENV = (*LOOPBACK_LEFTOVERS, "FLINK_CONF_DIR", "_python_worker_execution_mode", "TMPDIR",
             "HOSTNAME", "FLINK_ENV_JAVA_OPTS")

_GET = r"""
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    sys.stdout.write(e.read().decode(errors="replace")); sys.stderr.write("HTTP %d" % e.code)
    sys.exit(3)
except OSError as e:
    sys.stderr.write("%s: %s" % (type(e).__name__, e)); sys.exit(2)
"""

_JOB_ID_RE = re.compile(r"JobID ([0-9a-f]{32})")


class RestError(OSError):
    """A REST query to the JobManager failed (not up yet, HTTP error, bad JSON)."""


def job_ids(output: str) -> list[str]:
    """The job ids that ``flink run`` printed ("Job has been submitted with JobID ...")."""
    return list(dict.fromkeys(_JOB_ID_RE.findall(output)))


def shared_dir(name: str = "test") -> Path:
    """A new empty dir that every test host sees (under the checkout's ``.flink-dl-work/``,
    not ``/tmp``). The caller removes it (``shutil.rmtree``)."""
    parent = ROOT / ".flink-dl-work" / "multihost"
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:60]}-{secrets.token_hex(3)}"
    path.mkdir(mode=0o777)
    os.chmod(path, 0o777)
    return path


_set_nested = set_conf_key


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _memfds(pid: int) -> list[str]:
    found = []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("/memfd:"):
                    found.append(f"memfd: /proc/{pid}/fd/{fd} -> {target} ({_cmdline(pid)[:120]})")
    with contextlib.suppress(OSError), open(f"/proc/{pid}/maps") as f:
        maps = {line.split(None, 5)[-1].strip() for line in f if "/memfd:flink-dl-" in line}
        found += [f"memfd mapping: /proc/{pid}/maps: {m} ({_cmdline(pid)[:120]})"
                  for m in sorted(maps)]
    return found


class FlinkHosts:
    """A Flink session cluster across test hosts: JobManager on ``jm``, one TaskManager on
    each of ``tms``; see the module docstring."""

    __test__ = False

    def __init__(self, hosts: TestHosts, jm: str = "jm", tms: Sequence[str] = ("tm1", "tm2"),
                 slots: int = 2, conf_overrides: Mapping[str, Any] | None = None,
                 start_timeout_s: float = 120.0) -> None:
        if jm in tms or len(set(tms)) != len(tms) or not tms:
            raise ValueError(f"jm {jm!r} and distinct tms {tms!r} needed")
        self.hosts = hosts
        self.jm = jm
        self.tms = tuple(tms)
        self.slots = slots
        self.conf_overrides = dict(conf_overrides or {})
        self.start_timeout_s = start_timeout_s
        self.home = flink_home()
        self.jm_address = hosts[jm].address
        self.rest_url = f"http://{self.jm_address}:{REST_PORT}"
        #: The Flink JVM started on each host (JobManager or TaskManager), while it runs.
        self.jvms: dict[str, subprocess.Popen] = {}
        self.started = False
        self.start_s = 0.0
        self._by_address = {hosts[n].address: n for n in (jm, *self.tms)}
        self._by_hostname = {hosts[n].hostname: n for n in (jm, *self.tms)}

    # ---------------------------------------------------------------- config
    def config(self, name: str) -> dict[str, Any]:
        """The flat conf keys written into host ``name``'s ``config.yaml``."""
        return {
            "jobmanager.rpc.address": self.jm_address,
            "jobmanager.rpc.port": 6123,
            "jobmanager.bind-host": "0.0.0.0",
            "rest.address": self.jm_address,
            "rest.port": REST_PORT,
            "rest.bind-address": "0.0.0.0",
            "taskmanager.bind-host": "0.0.0.0",
            "taskmanager.host": self.hosts[name].address,
            "taskmanager.numberOfTaskSlots": self.slots,
            "jobmanager.memory.process.size": "1024m",
            "taskmanager.memory.process.size": "1280m",
            "python.executable": PYTHON,
            "python.client.executable": PYTHON,
            "heartbeat.interval": HEARTBEAT_INTERVAL_MS,
            "heartbeat.timeout": HEARTBEAT_TIMEOUT_MS,
            **self.conf_overrides,
        }

    def env(self, name: str) -> dict[str, str]:
        """The environment of every Flink process (JVM, client) on host ``name``."""
        env = {k: v for k, v in os.environ.items()
               if k not in _DROP_ENV and not k.startswith("PYTEST_")}
        pythonpath = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env.update({
            "FLINK_HOME": str(self.home),
            "FLINK_CONF_DIR": f"{BASE}/conf",
            "FLINK_LOG_DIR": f"{BASE}/log",
            "FLINK_PID_DIR": f"{BASE}/pids",
            "STD_REDIRECT_TO_FILE": "true",
            "PATH": f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
            "PYTHONPATH": os.pathsep.join(dict.fromkeys(pythonpath)),
            "FDL_TEST_HOST": name,
        })
        return env

    def _write_conf(self, name: str) -> None:
        conf = yaml.safe_load((self.home / "conf" / "config.yaml").read_text()) or {}
        for key, value in self.config(name).items():
            _set_nested(conf, key, value)
        script = (f'rm -rf {BASE} && mkdir -p {BASE}/log {BASE}/pids && cp -r "$1" {BASE}/conf'
                  f' && cat > {BASE}/conf/config.yaml')
        done = self.hosts[name].run(["sh", "-c", script, "sh", str(self.home / "conf")],
                                    input=yaml.safe_dump(conf))
        if done.returncode:
            raise RuntimeError(f"host {name}: writing the Flink conf failed: {done.stderr}")

    # ------------------------------------------------------------- lifecycle
    def __enter__(self) -> FlinkHosts:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FlinkHosts:
        """Write the confs, start the JobManager and the TaskManagers and wait until REST
        reports every TaskManager registered (``RuntimeError`` with the log tails if not
        within ``start_timeout_s``)."""
        t0 = time.monotonic()
        self.started = True
        try:
            for name in (self.jm, *self.tms):
                self._write_conf(name)
            self._start_jvm(self.jm, "jobmanager.sh")
            for name in self.tms:
                self._start_jvm(name, "taskmanager.sh")
            self.wait_registered(timeout_s=self.start_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.start_s = time.monotonic() - t0
        return self

    def ensure_started(self) -> FlinkHosts:
        """Start the cluster unless it runs with every TaskManager (for shared fixtures)."""
        if self.started and all(p.poll() is None for p in self.jvms.values()) \
                and set(self.jvms) == {self.jm, *self.tms}:
            return self
        self.stop()
        return self.start()

    def _start_jvm(self, name: str, script: str) -> subprocess.Popen:
        # sh execs bash (the script), which execs java: the pid stays the JVM's.
        argv = ["sh", "-c", 'exec "$@" >>"$0" 2>&1', f"{BASE}/log/console.txt",
                "bash", str(self.home / "bin" / script), "start-foreground"]
        proc = self.hosts[name].popen(argv, env=self.env(name), cwd=str(ROOT),
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        self.jvms[name] = proc
        return proc

    def wait_registered(self, timeout_s: float = 120.0,
                        not_ids: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Wait until REST lists exactly one TaskManager per TM host (none with an id in
        ``not_ids``: a replaced TaskManager must be gone); returns ``taskmanagers()``."""
        deadline = time.monotonic() + timeout_s
        last: object = None
        while True:
            for name, proc in self.jvms.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"the Flink JVM on {name} exited ({proc.returncode}) "
                                       f"during start-up\n{self.log_tails()}")
            try:
                tms = self.taskmanagers()
                last = [(t["host"], t["id"]) for t in tms]
                hosts = sorted(t["host"] for t in tms)
                if hosts == sorted(self.tms) and not {t["id"] for t in tms} & set(not_ids):
                    return tms
            except RestError as e:
                last = e
            if time.monotonic() > deadline:
                raise RuntimeError(f"Flink did not report TaskManagers on {list(self.tms)} "
                                   f"within {timeout_s:.0f}s (last: {last})\n{self.log_tails()}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGKILL every process on every host of the cluster (JVMs, Python workers, their
        children, clients) except the hosts' anchors, and wait until they are gone.
        Idempotent; the conf and log dirs stay (for ``log_tail``) until TestHosts exits."""
        errors = []
        for name in (self.jm, *self.tms):
            try:
                self.kill_host_processes(name)
            except RuntimeError as e:
                errors.append(str(e))
        self.jvms.clear()
        self.started = False
        if errors:
            raise RuntimeError("; ".join(errors))

    # -------------------------------------------------------------- failures
    def kill_host_processes(self, name: str, timeout_s: float = 10.0) -> list[int]:
        """SIGKILL every process on host ``name`` but its anchor (the Flink JVM, its Python
        workers and their children, anything else); returns the pids killed."""
        host = self.hosts[name]
        anchor = host.anchor.pid if host.anchor else -1
        killed: list[int] = []
        deadline = time.monotonic() + timeout_s
        while True:
            pids = [p for p in host.pids() if p != anchor and _pid_alive(p)]
            if not pids:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"host {name}: processes {pids} survived SIGKILL")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if pid not in killed:
                    killed.append(pid)
            time.sleep(0.05)
        for proc in host.procs:  # reap our own children (no zombies of ours)
            if proc.poll() is None and proc.pid in killed:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        host.procs[:] = [p for p in host.procs if p.poll() is None]
        if name in self.jvms and self.jvms[name].poll() is not None:
            del self.jvms[name]
        return killed

    def restart_tm(self, name: str, timeout_s: float = 90.0) -> dict[str, Any]:
        """Kill everything on TM host ``name`` (if anything runs there), start a new
        TaskManager there and wait until the JobManager has dropped the old one and lists
        the new one; returns the new one's ``taskmanagers()`` entry."""
        if name not in self.tms:
            raise ValueError(f"{name!r} is not a TaskManager host of {self.tms}")
        with contextlib.suppress(RestError):
            old = [t["id"] for t in self.taskmanagers() if t["host"] == name]
        self.kill_host_processes(name)
        self._start_jvm(name, "taskmanager.sh")
        tms = self.wait_registered(timeout_s=timeout_s, not_ids=old)
        return next(t for t in tms if t["host"] == name)

    # ------------------------------------------------------------------ jobs
    def _client_argv(self, script: str | os.PathLike[str], args: Sequence[str]) -> list[str]:
        return ["bash", str(self.home / "bin" / "flink"), "run", "-m",
                f"{self.jm_address}:{REST_PORT}", "-py", str(script), *args]

    def _client_env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        merged = self.env(self.jm)
        merged.update(env or {})
        return merged

    def submit(self, script: str | os.PathLike[str], *args: str, timeout: float = 300,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``flink run -m <jm>:8081 -py script args...`` on the JM host, to completion;
        stdout/stderr captured (text). Does not raise on failure: check ``returncode``
        (``subprocess.TimeoutExpired`` after ``timeout``). ``job_ids(proc.stdout)``."""
        return self.hosts[self.jm].run(self._client_argv(script, args),
                                       env=self._client_env(env), timeout=timeout,
                                       cwd=str(ROOT))

    def submit_async(self, script: str | os.PathLike[str], *args: str,
                     env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """``submit`` without waiting: a ``Popen`` (stdout/stderr pipes, text); killed by
        ``stop()``. Use ``communicate()`` to wait."""
        return self.hosts[self.jm].popen(self._client_argv(script, args),
                                         env=self._client_env(env), cwd=str(ROOT),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)

    # ------------------------------------------------------------------ REST
    def rest(self, path: str, timeout: float = 10.0) -> Any:
        """``GET <jm>:8081<path>`` from the JM host, parsed JSON; ``RestError`` if it fails."""
        try:
            done = self.hosts[self.jm].run(
                [PYTHON, "-I", "-S", "-c", _GET, self.rest_url + path, str(timeout)],
                timeout=timeout + 10, cwd="/")
        except subprocess.TimeoutExpired as e:
            raise RestError(f"GET {path}: timed out") from e
        if done.returncode:
            raise RestError(f"GET {path}: {done.stderr.strip()} {done.stdout.strip()[:500]}")
        try:
            return json.loads(done.stdout)
        except ValueError as e:
            raise RestError(f"GET {path}: not JSON: {done.stdout[:500]!r}") from e

    def host_of(self, address: str) -> str | None:
        """Our host name ("tm1") for an address, hostname, ``host:port`` or pekko path in
        REST (subtask endpoints name the TaskManager's hostname, ids its address)."""
        m = re.search(r"(\d+\.\d+\.\d+\.\d+)", address or "")
        if m:
            return self._by_address.get(m.group(1))
        m = re.search(r"([A-Za-z0-9][A-Za-z0-9.-]*)(?::\d+)?$", address or "")
        return self._by_hostname.get(m.group(1)) if m else None

    def taskmanagers(self) -> list[dict[str, Any]]:
        """REST ``/taskmanagers`` entries, each with ``host``: our host name."""
        tms = self.rest("/taskmanagers").get("taskmanagers", [])
        for tm in tms:
            tm["host"] = self.host_of(tm.get("path", "")) or self.host_of(tm.get("id", ""))
        return tms

    def jobs(self) -> list[dict[str, Any]]:
        """REST ``/jobs/overview`` entries (``jid``, ``name``, ``state``, ...)."""
        return self.rest("/jobs/overview").get("jobs", [])

    def wait_job(self, job_id: str, states: Sequence[str] = ("FINISHED", "FAILED", "CANCELED"),
                 timeout_s: float = 120.0) -> str:
        """Poll until job ``job_id`` is in one of ``states``; returns the state."""
        deadline = time.monotonic() + timeout_s
        state = None
        while time.monotonic() < deadline:
            with contextlib.suppress(RestError):
                state = self.rest(f"/jobs/{job_id}").get("state")
                if state in states:
                    return state
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} still {state} after {timeout_s}s")

    def job_vertices(self, job_id: str) -> list[dict[str, Any]]:
        """One entry per subtask of every vertex of ``job_id`` (current attempts):
        ``vertex`` (name), ``vertex_id``, ``subtask``, ``attempt``, ``status``, ``host``
        (our host name of its TaskManager, None if not deployed) and ``endpoint``."""
        rows = []
        for vertex in self.rest(f"/jobs/{job_id}").get("vertices", []):
            detail = self.rest(f"/jobs/{job_id}/vertices/{vertex['id']}")
            for sub in detail.get("subtasks", []):
                endpoint = sub.get("endpoint") or sub.get("host") or ""
                rows.append({
                    "vertex": vertex.get("name"), "vertex_id": vertex["id"],
                    "subtask": sub.get("subtask"), "attempt": sub.get("attempt"),
                    "status": sub.get("status"), "endpoint": endpoint,
                    "taskmanager_id": sub.get("taskmanager-id"),
                    "host": self.host_of(sub.get("taskmanager-id") or "")
                    or self.host_of(endpoint),
                })
        return rows

    # ------------------------------------------------------------ inspection
    def leftovers(self, name: str) -> list[str]:
        """What is left on host ``name`` besides its anchor and (while it runs) its Flink
        JVM: processes, memfds held or mapped by any process there (JVM included), and
        ``flink-dl-*`` entries in its ``/tmp`` and ``/dev/shm`` (for the rendezvous root
        ``/tmp/flink-dl-rendezvous-<uid>``, the job scopes inside it)."""
        host = self.hosts[name]
        expected = {host.anchor.pid} if host.anchor else set()
        jvm = self.jvms.get(name)
        if jvm is not None and jvm.poll() is None:
            expected.add(jvm.pid)
        found = []
        for pid in host.pids():
            if not _pid_alive(pid):
                continue
            if pid not in expected:
                found.append(f"process {pid}: {_cmdline(pid)[:300]}")
            found += _memfds(pid)
        listing = host.sh(
            "for p in /tmp/flink-dl-* /dev/shm/*flink-dl*; do [ -e \"$p\" ] || continue; "
            "case \"$p\" in /tmp/flink-dl-rendezvous-*) "
            "for q in \"$p\"/* \"$p\"/.[!.]*; do [ -e \"$q\" ] && echo \"$q\"; done;; "
            "*) echo \"$p\";; esac; done")
        found += [f"path: {p}" for p in listing.stdout.split("\n") if p]
        return found

    def all_leftovers(self) -> dict[str, list[str]]:
        """``leftovers`` of every host of the cluster that has any."""
        left = {n: self.leftovers(n) for n in (self.jm, *self.tms)}
        return {n: v for n, v in left.items() if v}

    def log_tail(self, name: str, lines: int = 40, max_chars: int = 6000) -> str:
        """The last ``lines`` of every file in host ``name``'s Flink log dir (JVM log,
        .out/.err, console.txt, client log), at most ``max_chars`` of it."""
        host = self.hosts[name]
        if host.anchor is None or host.anchor.poll() is not None:
            return f"[{name}: host is gone]"
        done = host.sh(f'for f in {BASE}/log/*; do [ -s "$f" ] || continue; '
                       f'echo "==> {name}:$f"; tail -n {lines} "$f"; done')
        text = done.stdout + done.stderr
        return text if len(text) <= max_chars else "...\n" + text[-max_chars:]

    def log_tails(self, lines: int = 40) -> str:
        """``log_tail`` of every host, for assertion messages."""
        return "\n".join(self.log_tail(n, lines) for n in (self.jm, *self.tms))


@contextlib.contextmanager
def flink_cluster(jm: str = "jm", tms: Sequence[str] = ("tm1", "tm2"), slots: int = 2,
                  conf_overrides: Mapping[str, Any] | None = None) -> Iterator[FlinkHosts]:
    """Test hosts ``jm`` + ``tms`` and a started ``FlinkHosts`` on them; everything is
    killed and removed on exit (``flink.hosts`` is the ``TestHosts``)."""
    with TestHosts([jm, *tms]) as hosts, FlinkHosts(hosts, jm, tms, slots,
                                                    conf_overrides) as flink:
        yield flink


def remove_shared_dir(path: Path) -> None:
    """Remove a ``shared_dir`` (files written by root-run workers included)."""
    shutil.rmtree(path, ignore_errors=True)


__all__ = ["FlinkHosts", "RestError", "TestHost", "flink_cluster", "job_ids", "remove_shared_dir",
           "shared_dir"]
