"""Client script for the orphan clean-up test: an ML cluster of 2 workers (file rendezvous
in ``RDV``) on the embedded Flink. Each node starts a grandchild (``sleep``, in the node's
process group, as a data loader or a framework launcher would), writes
``<OUT>/worker-<index>.json`` (its work dir, its pid, the grandchild's pid) and waits for
``<OUT>/release``.

    python tests/jobs/waiting_client.py OUT RDV
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from pyflink.datastream import StreamExecutionEnvironment

import flink_dl
from flink_dl.log import configure_logging


def wait_for_release(ctx: flink_dl.NodeContext) -> dict:
    import os

    out = Path(ctx.properties["out"])
    child = subprocess.Popen(["sleep", "600"])
    (out / f"worker-{ctx.index}.json.part").write_text(json.dumps(
        {"work_dir": ctx.work_dir, "pid": os.getpid(), "grandchild": child.pid}))
    os.replace(out / f"worker-{ctx.index}.json.part", out / f"worker-{ctx.index}.json")
    while not (out / "release").exists():
        time.sleep(0.2)
        ctx.heartbeat()
    child.kill()
    child.wait()
    return {"index": ctx.index}


if __name__ == "__main__":
    configure_logging()
    out, rdv = sys.argv[1], sys.argv[2]
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_python_executable(sys.executable)
    config = flink_dl.ClusterConfig(roles={"worker": 2}, entry=wait_for_release,
                                    properties={"out": out}, rendezvous="file",
                                    rendezvous_dir=rdv, name="waiting")
    flink_dl.add_cluster(env, config)
    flink_dl.execute(env, "waiting client", timeout_s=600)
    print("client done", flush=True)
