"""Every py4j gateway thread can plan: Calcite's metadata provider set on each of them.

Why: Flink's planner creates its ``RelOptCluster`` once per ``TableEnvironment``, and
``RelOptCluster.setMetadataProvider`` stores the metadata handler provider in Calcite's
thread-local ``RelMetadataQueryBase.THREAD_PROVIDERS`` of *that* JVM thread only. Each
rule that rewrites a plan invalidates the cluster's cached ``RelMetadataQuery``; the next
one is made on the planning thread from that thread-local. py4j serves each Python-side
connection on a JVM thread of its own and keeps a pool of connections: once a second
Python thread has called into the JVM while another call was in flight (a loopback
worker, a progress or timeout thread, a user's thread), a later call of the main thread
may be served by a JVM thread that never built a planner, and planning there fails with
``java.lang.NullPointerException: metadataHandlerProvider`` (FLINK-23020, open upstream).

:func:`install` primes every connection of PyFlink's gateway: each new connection, before
its first command, and every pooled one, sets the thread-local of the JVM thread that
serves it to the provider Flink's planner uses (``FlinkDefaultRelMetadataProvider``).
flink-dl calls it wherever it builds or runs a job; call it yourself before planning from
threads of your own when flink-dl is not involved.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from flink_dl.errors import EngineError

log = logging.getLogger(__name__)

_PRIMED = "_flink_dl_planner_primed"
_lock = threading.Lock()


@dataclass
class _Primer:
    """The JVM objects one priming needs, kept alive on both sides for the gateway's life."""

    client: Any
    thread_local: Any  # RelMetadataQueryBase.THREAD_PROVIDERS (a java.lang.ThreadLocal)
    provider: Any  # JaninoRelMetadataProvider.of(FlinkDefaultRelMetadataProvider.INSTANCE)

    def command(self) -> str:
        # One py4j call: ThreadLocal.set(provider), on whichever connection sends it.
        return (f"c\n{self.thread_local._target_id}\nset\n"
                f"r{self.provider._target_id}\ne\n")

    def prime(self, connection: Any) -> None:
        if getattr(connection, _PRIMED, False):
            return
        answer = connection.send_command(self.command())
        if not answer.startswith("y"):
            raise EngineError(f"the JVM refused to set Calcite's metadata provider: {answer}")
        setattr(connection, _PRIMED, True)


_primer: _Primer | None = None


def install() -> bool:
    """Prime PyFlink's gateway connections, now and from now on (idempotent, thread-safe).

    Returns False (and logs why at DEBUG) where the planner's classes cannot be reached;
    planning then behaves as in plain PyFlink."""
    global _primer
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    client = gateway._gateway_client
    with _lock:
        if _primer is not None and _primer.client is client:
            return True
        try:
            primer = _make_primer(gateway, client)
        except Exception as exc:  # a Flink without the loader or Calcite moved: plain PyFlink
            log.debug("Calcite's metadata provider is not set on py4j threads: %s", exc)
            return False
        _wrap_connections(client, primer)
        _primer = primer
    _prime_idle(client, primer)
    return True


def _make_primer(gateway: Any, client: Any) -> _Primer:
    jvm = gateway.jvm
    loader = jvm.org.apache.flink.table.planner.loader.PlannerModule.getInstance() \
        .getSubmoduleClassLoader()
    thread_local = loader.loadClass("org.apache.calcite.rel.metadata.RelMetadataQueryBase") \
        .getField("THREAD_PROVIDERS").get(None)
    flink_default = loader.loadClass(
        "org.apache.flink.table.planner.plan.metadata.FlinkDefaultRelMetadataProvider$"
    ).getField("MODULE$").get(None).INSTANCE()
    parameter_types = gateway.new_array(jvm.java.lang.Class, 1)
    parameter_types[0] = loader.loadClass("org.apache.calcite.rel.metadata.RelMetadataProvider")
    arguments = gateway.new_array(jvm.java.lang.Object, 1)
    arguments[0] = flink_default
    provider = loader.loadClass("org.apache.calcite.rel.metadata.JaninoRelMetadataProvider") \
        .getMethod("of", parameter_types).invoke(None, arguments)
    return _Primer(client=client, thread_local=thread_local, provider=provider)


def _wrap_connections(client: Any, primer: _Primer) -> None:
    """New connections are primed before their first command; pooled ones before reuse."""
    create = client._create_connection
    give_back = client._give_back_connection

    def create_primed() -> Any:
        connection = create()
        try:
            primer.prime(connection)
        except Exception as exc:  # the call that opened it goes on, as in plain PyFlink
            log.debug("could not prime a new py4j connection: %s", exc)
        return connection

    def give_back_primed(connection: Any) -> None:
        try:
            primer.prime(connection)
        except Exception as exc:  # a broken connection: py4j drops it on its next use
            log.debug("could not prime a py4j connection: %s", exc)
        give_back(connection)

    client._create_connection = create_primed
    client._give_back_connection = give_back_primed


def _prime_idle(client: Any, primer: _Primer) -> None:
    """Prime the connections idle in the pool now (those in use are primed on return)."""
    idle = []
    while True:
        try:
            idle.append(client.deque.pop())
        except IndexError:
            break
    for connection in idle:
        client._give_back_connection(connection)
