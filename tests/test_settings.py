"""Unit: the user switches (``RuntimeSettings``), the node identity (``NodeIdentity``) and
the rendezvous strategies; no JVM."""

from __future__ import annotations

from pathlib import Path

import pytest

from flink_dl import ClusterConfig, ConfigError
from flink_dl.cluster.registry import get_rendezvous, hosted_am_config, register_store
from flink_dl.cluster.rendezvous import FileStore
from flink_dl.cluster.rendezvous_strategy import RendezvousParameters
from flink_dl.settings import ENV_NAMES, NodeIdentity, RuntimeSettings, SettingsError

README = Path(__file__).resolve().parent.parent / "README.md"


def test_defaults_and_every_polarity() -> None:
    assert RuntimeSettings.from_env({}) == RuntimeSettings()
    settings = RuntimeSettings.from_env({
        "FLINK_DL_JVM_ARCHIVE": "off", "FLINK_DL_SAMPLER_THREAD": "Yes",
        "FLINK_DL_PREWARM": "auto", "FLINK_DL_LOOPBACK_BOOT_TIMEOUT_S": "7.5",
        "FLINK_DL_SHARED_PREDICT": "", "FLINK_DL_NODE_PYTHON": "/usr/bin/python3"})
    assert not settings.jvm_archive and settings.sampler_thread and settings.prewarm is None
    assert settings.loopback_boot_timeout_s == 7.5 and settings.shared_predict
    assert settings.node_python == "/usr/bin/python3"
    assert RuntimeSettings.from_env({"FLINK_DL_PREWARM": "1"}).prewarm is True
    assert RuntimeSettings.from_env({"FLINK_DL_PREWARM": "0"}).prewarm is False


@pytest.mark.parametrize(("name", "value"), [("FLINK_DL_MALLOC_TUNING", "maybe"),
                                             ("FLINK_DL_JVM_ARCHIVE_BUILD_TIMEOUT_S", "soon"),
                                             ("FLINK_DL_LOOPBACK_BOOT_TIMEOUT_S", "-1")])
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name) as info:
        RuntimeSettings.from_env({name: value})
    assert isinstance(info.value, ConfigError)


def test_the_readme_table_lists_every_switch() -> None:
    text = README.read_text()
    for env in ENV_NAMES.values():
        assert f"| `{env}` |" in text, f"{env} is missing from README.md's Settings table"


def test_node_identity_round_trips_and_tolerates_foreign_values() -> None:
    identity = NodeIdentity(job_id="j", attempt=2, role="worker", index=1, parent_pid=42,
                            client="7:1.5")
    assert NodeIdentity.from_env(identity.to_env()) == identity
    assert NodeIdentity(job_id="j").to_env() == {"FLINK_DL_JOB_ID": "j"}
    assert NodeIdentity.from_env({"FLINK_DL_INDEX": "x"}).index is None


def test_rendezvous_strategies_answer_for_their_name(tmp_path: Path) -> None:
    dataflow = get_rendezvous("dataflow")
    params = RendezvousParameters("dataflow", "job", None, str(tmp_path))
    assert dataflow.through_dataflow and dataflow.store(params) is None
    hosted = dataflow.for_hosted_am(params)
    assert (hosted.strategy, hosted.dir) == ("file", str(tmp_path / "rendezvous"))
    file = get_rendezvous("file")
    store = file.store(RendezvousParameters("file", "job", str(tmp_path / "rdv")))
    assert not file.through_dataflow and isinstance(store, FileStore)
    assert store.scope == tmp_path / "rdv" / "job"
    assert file.for_hosted_am(params) is params


def test_hosted_am_config_and_a_registered_store(tmp_path: Path) -> None:
    config = ClusterConfig(roles={"w": 1}, entry="json:dumps", checkpoint_dir=str(tmp_path))
    hosted = hosted_am_config(config)
    assert (hosted.rendezvous, hosted.rendezvous_dir) == ("file", str(tmp_path / "rendezvous"))
    register_store("test-mem", lambda job_id, opts: FileStore(job_id, opts["dir"]))
    mine = ClusterConfig(roles={"w": 1}, entry="json:dumps", rendezvous="test-mem",
                         rendezvous_dir=str(tmp_path))
    assert hosted_am_config(mine) is mine
    with pytest.raises(ConfigError, match="checkpoint_dir or rendezvous_dir"):
        hosted_am_config(ClusterConfig(roles={"w": 1}, entry="json:dumps"))
