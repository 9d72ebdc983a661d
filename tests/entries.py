"""Node entries used by the integration tests (pickled by value into the job)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from flink_dl import NodeContext


def record(ctx: NodeContext) -> dict:
    """Write what this node sees to ``<out>/<role>-<index>.json`` and return a summary."""
    seen = {
        "role": ctx.role, "index": ctx.index, "cluster_spec": ctx.cluster_spec,
        "properties": ctx.properties, "job_id": ctx.job_id, "attempt": ctx.attempt,
        "pid": os.getpid(), "port": ctx.port, "work_dir": ctx.work_dir,
        "env_marker": os.environ.get("TEST_MARKER"),
        "env_role": os.environ.get("FLINK_DL_ROLE"),
    }
    out = Path(ctx.properties["out"]) / f"{ctx.role}-{ctx.index}.json"
    out.write_text(json.dumps(seen))
    return {"role": ctx.role, "index": ctx.index}


def boom_on_b1(ctx: NodeContext) -> None:
    """b:1 raises ValueError('boom') after a moment; every other node runs until stopped."""
    record(ctx)
    if (ctx.role, ctx.index) == ("b", 1):
        time.sleep(0.5)
        raise ValueError("boom")
    ctx.wait_for_stop(timeout=120)


def worker_or_daemon(ctx: NodeContext) -> None:
    """Workers finish after a moment; the daemon role waits for the AM's stop and says so."""
    record(ctx)
    out = Path(ctx.properties["out"])
    if ctx.role == "ps":
        stopped = ctx.wait_for_stop(timeout=120)
        # Work after the stop, like a chief's final export (property "linger_s").
        time.sleep(float(ctx.properties.get("linger_s", "0")))
        if ctx.properties.get("fail_on_stop"):
            raise OSError("disk full while exporting")
        (out / f"ps-{ctx.index}.stopped").write_text(str(stopped))
        return
    time.sleep(1.0)


def _mix64(ids):
    """splitmix64 of int64 ids, summed modulo 2**64: an order-free checksum of the id set."""
    import numpy as np

    z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return int(z.sum(dtype=np.uint64))


def checksum_epochs(ctx: NodeContext) -> None:
    """Per epoch: rows, sum of ids and an order-free hash of ids; one output row each."""
    import numpy as np

    for epoch in ctx.epochs():
        rows = total = mixed = 0
        for batch in epoch:
            ids = batch.column("id").to_numpy()
            rows += len(ids)
            total += int(ids.sum())
            mixed = (mixed + _mix64(ids)) % (1 << 64)
        ctx.write([{"index": ctx.index, "epoch": epoch.number, "rows": rows, "total": total,
                    "mixed": str(mixed)}])
    assert np  # imported for the checksum helper


def double_ids(ctx: NodeContext) -> None:
    """Write back one row per input row: the id and twice the value."""
    for batch in ctx.numpy_batches(batch_size=300):
        ctx.write({"id": batch["id"], "doubled": batch["value"] * 2})


def slow_reader(ctx: NodeContext) -> None:
    """Reads slowly and records how full its input channel ever got."""
    rows, peak = 0, 0
    for batch in ctx.batches():
        rows += batch.num_rows
        peak = max(peak, ctx.input_stats()["buffered_bytes"])
        time.sleep(0.02)
    stats = ctx.input_stats()
    ctx.write([{"rows": rows, "peak": peak, "capacity": stats["capacity"]}])


def die_mid_stream(ctx: NodeContext) -> None:
    """SIGKILLs its own process after two batches."""
    import signal

    for seen, _ in enumerate(ctx.batches(), start=1):
        if seen == 2:
            (Path(ctx.properties["out"]) / f"dying-{ctx.index}").write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


def numpy_reader(ctx: NodeContext) -> None:
    for _ in ctx.numpy_batches(batch_size=10):
        pass


def run_forever(ctx: NodeContext) -> None:
    """Records its pid, then runs until killed (never looks at the stop flag)."""
    (Path(ctx.properties["out"]) / f"{ctx.role}-{ctx.index}.pid").write_text(str(os.getpid()))
    while True:
        time.sleep(0.2)


def dial_peers(ctx: NodeContext) -> dict:
    """Serve on the node's held port and dial every other node's advertised address: each
    node records which peers it reached (and who reached it) next to ``record``'s facts,
    in ``<out>/<role>-<index>.json``. Proves the addresses are reachable from the peers'
    hosts, not just distinct."""
    import socket
    import threading

    me = f"{ctx.role}:{ctx.index}"
    peers = {f"{role}:{i}": address for role, addresses in ctx.cluster_spec.items()
             for i, address in enumerate(addresses) if f"{role}:{i}" != me}
    server = ctx.reserved_socket()
    server.listen(16)
    server.settimeout(60)
    dialled_by: list[str] = []

    def serve() -> None:
        for _ in peers:
            conn, _ = server.accept()
            with conn:
                dialled_by.append(conn.recv(64).decode())
                conn.sendall(me.encode())

    server_thread = threading.Thread(target=serve, daemon=True)
    server_thread.start()
    reached: dict[str, str] = {}
    for name, address in peers.items():
        host, port = address.rsplit(":", 1)
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection((host, int(port)), timeout=5) as conn:
                    conn.sendall(me.encode())
                    reached[name] = conn.recv(64).decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    server_thread.join(60)
    server.close()
    seen = record(ctx)
    out = Path(ctx.properties["out"]) / f"{ctx.role}-{ctx.index}.json"
    facts = json.loads(out.read_text())
    facts.update({"reached": reached, "dialled_by": sorted(dialled_by),
                  "hostname": socket.gethostname()})
    out.write_text(json.dumps(facts))
    return seen
