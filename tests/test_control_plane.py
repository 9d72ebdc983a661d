"""Control plane with real sockets: authentication, spec hand-out, heartbeats, wire format."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import pytest

from flink_dl import ClusterConfig
from flink_dl.cluster.am import AppMaster
from flink_dl.cluster.api import ClusterState
from flink_dl.cluster.node import AMConnection, find_am
from flink_dl.cluster.protocol import MAX_FRAME_BYTES, recv_msg
from flink_dl.cluster.registry import rendezvous_of
from flink_dl.errors import AuthenticationError, ClusterFailedError, ProtocolError


def _entry(ctx) -> None:
    return None


@pytest.fixture
def config(tmp_path) -> ClusterConfig:
    return ClusterConfig(roles={"w": 2}, entry=_entry, rendezvous="file",
                         rendezvous_dir=str(tmp_path / "rdv"),
                         timeouts={"registration": 10, "heartbeat_timeout": 2,
                                   "heartbeat_interval": 0.2, "shutdown": 2})


def _run_am(am: AppMaster) -> dict:
    box: dict = {}

    def target() -> None:
        try:
            box["summary"] = am.run()
        except Exception as exc:
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    box["thread"] = t
    return box


def _store(config: ClusterConfig):
    strategy, params = rendezvous_of(config)
    return strategy.store(params)


def _register_all(conns: list[AMConnection], addresses: list[str]) -> dict[int, dict]:
    """Register node w:i on conns[i] concurrently (the AM answers once all registered)."""
    replies: dict[int, dict] = {}

    def register(i: int) -> None:
        replies[i] = conns[i].request({"type": "register", "role": "w", "index": i,
                                       "address": addresses[i]}, timeout=10)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(len(conns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return replies


def test_wrong_secret_is_refused(config: ClusterConfig) -> None:
    am = AppMaster(config)
    am.start()
    try:
        found = find_am(_store(config), config, 0)
        address = (found.hosts[0], found.port)
        impostor = ClusterConfig(**{**config.__dict__, "secret": "x" * 64})
        with pytest.raises(AuthenticationError, match="refused"):
            AMConnection(address, impostor, 0)
        # The right secret but another attempt is refused as well.
        with pytest.raises(AuthenticationError):
            AMConnection(address, config, 1)
        deadline = time.monotonic() + 5
        while am.refused_connections < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert am.refused_connections == 2
        assert am.state is ClusterState.INIT
        # The genuine node still gets in.
        AMConnection(address, config, 0).close()
    finally:
        am.close()


def _am_with_two_connections(config: ClusterConfig) -> tuple[dict, list[AMConnection]]:
    """A running AM (its thread and outcome in the box) and two authenticated connections."""
    am = AppMaster(config)
    am.start()
    box = _run_am(am)
    found = find_am(_store(config), config, 0)
    address = (found.hosts[0], found.port)
    return box, [AMConnection(address, config, 0) for _ in range(2)]


def test_registration_heartbeat_and_finish(config: ClusterConfig) -> None:
    box, conns = _am_with_two_connections(config)
    replies = _register_all(conns, ["127.0.0.1:5000", "127.0.0.1:5001"])
    assert replies[0]["cluster_spec"] == {"w": ["127.0.0.1:5000", "127.0.0.1:5001"]}
    assert replies[0] == replies[1]
    for i in range(2):
        status = conns[i].request({"type": "heartbeat", "role": "w", "index": i,
                                   "running": True})
        assert status == {"type": "status", "state": "RUNNING", "stop": False}
    for i in range(2):
        conns[i].request({"type": "finished", "role": "w", "index": i, "result": i})
        conns[i].close()
    box["thread"].join(10)
    summary = box["summary"]
    assert summary.state is ClusterState.FINISHED
    assert summary.nodes == {"w:0": "FINISHED", "w:1": "FINISHED"}
    assert summary.timing["all_running"] >= summary.timing["am_started"]
    assert _store(config).lookup("am-0") is None, "the AM removes its address when done"


def test_silent_node_is_lost_and_fails_cluster(config: ClusterConfig) -> None:
    box, conns = _am_with_two_connections(config)
    _register_all(conns, ["h:1", "h:2"])
    started = time.monotonic()
    while box["thread"].is_alive() and time.monotonic() - started < 10:
        conns[0].request({"type": "heartbeat", "role": "w", "index": 0, "running": True})
        time.sleep(0.2)
    assert isinstance(box.get("error"), ClusterFailedError)
    assert "ML node w:1 (role 'w', index 1) LOST: no heartbeat" in str(box["error"])
    assert time.monotonic() - started < config.timeout.heartbeat_timeout + 3


def test_registration_timeout_names_missing_nodes(tmp_path) -> None:
    config = ClusterConfig(roles={"w": 2}, entry=_entry, rendezvous_dir=str(tmp_path),
                           timeouts={"registration": 0.5, "shutdown": 0.5})
    with pytest.raises(ClusterFailedError, match=r"w:0.*did not register"):
        AppMaster(config).run()


def test_oversize_and_garbage_frames_are_rejected() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">I", MAX_FRAME_BYTES + 1))
        with pytest.raises(ProtocolError, match="exceeds"):
            recv_msg(b)
    a, b = socket.socketpair()
    with a, b:
        payload = b"\x80\x04pickle"
        a.sendall(struct.pack(">I", len(payload)) + payload)
        with pytest.raises(ProtocolError, match="not JSON"):
            recv_msg(b)


def test_rendezvous_files_are_private(config: ClusterConfig) -> None:
    import os
    import stat

    store = _store(config)
    store.publish("am-0", {"host": "h", "port": 1})
    path = store.scope / "am-0.json"
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(store.scope.stat().st_mode) == 0o700
    assert store.lookup("am-0") == {"host": "h", "port": 1}
    store.delete("am-0")
    store.close()
    assert not os.path.exists(store.scope)


def test_node_finds_its_am_in_the_named_store_or_needs_the_dataflow_address(
        config: ClusterConfig) -> None:
    from flink_dl.cluster.node import NodeRunner
    from flink_dl.errors import ConfigError

    runner = NodeRunner(config, "w", 0, 0, b"")  # rendezvous="file": the store is made
    assert runner.store is not None and runner.am_address is None
    dataflow = ClusterConfig(roles={"w": 1}, entry=_entry)
    with pytest.raises(ConfigError, match="node w:0: rendezvous='dataflow' needs the AM"):
        NodeRunner(dataflow, "w", 0, 0, b"")


def test_am_address_travels_as_json_and_rejects_anything_else() -> None:
    from flink_dl.cluster.am import AMAddress
    from flink_dl.errors import ProtocolError

    address = AMAddress("job", 2, ("10.0.0.5", "192.168.1.9"), 4242)
    assert AMAddress.from_json(address.to_json()) == address
    for bad in ("not json", '{"kind": "other"}', json.dumps({**address.to_mapping(),
                                                             "hosts": []})):
        with pytest.raises(ProtocolError, match="not an AM address"):
            AMAddress.from_json(bad)


def test_addresses_need_no_setting_and_never_advertise_loopback_beside_a_network() -> None:
    from flink_dl.cluster import net

    assert net.am_hosts("127.0.0.1", None) == ["127.0.0.1"]
    assert net.am_hosts("0.0.0.0", "am.example") == ["am.example"]
    hosts = net.am_hosts("0.0.0.0", None)
    assert hosts and len(set(hosts)) == len(hosts)
    assert hosts == ["127.0.0.1"] or not any(net.is_loopback(h) for h in hosts), hosts
    assert all(net.interface_of(h) for h in hosts)
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as conn:
        assert net.node_host("0.0.0.0", None, conn) == conn.getsockname()[0]
        assert net.node_host("10.1.2.3", None, conn) == "10.1.2.3"
        assert net.node_host("0.0.0.0", "node.example", conn) == "node.example"
