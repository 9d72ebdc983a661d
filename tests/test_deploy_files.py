"""Offline checks of the deployment recipes (deploy/docker, deploy/kubernetes).

No Kubernetes or Docker runs here, so this checks what can be checked without them: every
manifest parses and is the kind it should be; the FlinkDeployment runs a script the image
contains, the same one the multi-host test runs, with arguments that script accepts; the
jar, Flink version and interpreter it names agree with the image and pyproject.toml; the
Dockerfile copies only what exists and pins what pyproject.toml pins; and no flink-dl
placement setting (rendezvous, bind/advertise host) is needed anywhere.

Every check is a function that raises AssertionError; the tests at the end feed each one a
broken copy to show that it can fail.
"""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
KUBERNETES = REPO / "deploy" / "kubernetes"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
PYPROJECT = REPO / "pyproject.toml"

#: The job the Kubernetes manifest runs is the one the multi-host test cluster runs.
MULTIHOST_JOB_SCRIPT = "examples/digits.py"
#: Where the image puts the repository's files (deploy/docker/Dockerfile: WORKDIR + COPY).
IMAGE_ROOT = "/opt/flink-dl"
#: Expected apiVersion of each kind of object in deploy/kubernetes.
API_VERSIONS = {
    "FlinkDeployment": "flink.apache.org/v1beta1",
    "PersistentVolumeClaim": "v1",
}
PYTHON_DRIVER = "org.apache.flink.client.python.PythonDriver"
#: Pins the image must share with pyproject.toml.
PINNED = ("apache-flink", "torch", "tensorflow", "tf-keras")
#: Words of flink-dl's placement settings: none may appear in a manifest or the image.
FORBIDDEN = ("rendezvous", "bind_host", "bind-host", "advertise_host", "advertise-host",
             "bindhost", "advertisehost")


# -- loading ---------------------------------------------------------------------------

def manifest_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(KUBERNETES.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path, doc))
    return docs


def flink_deployment(docs: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    found = [doc for _, doc in docs if doc.get("kind") == "FlinkDeployment"]
    assert len(found) == 1, f"expected one FlinkDeployment in {KUBERNETES}, found {len(found)}"
    return found[0]


def pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+-]+)", dep.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        current += line
        word, _, rest = current.strip().partition(" ")
        instructions.append((word.upper(), rest.strip()))
        current = ""
    if current.strip():
        word, _, rest = current.strip().partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def script_and_args(deployment: dict[str, Any]) -> tuple[str, list[str]]:
    """The ``-py`` script and the arguments after it (the script's own)."""
    args = [str(a) for a in deployment["spec"]["job"]["args"]]
    assert "-py" in args, f"job.args {args} names no script with -py"
    at = args.index("-py")
    assert at + 1 < len(args), "job.args ends after -py"
    return args[at + 1], args[at + 2:]


# -- checks ----------------------------------------------------------------------------

def check_kinds(docs: list[tuple[Path, dict[str, Any]]]) -> None:
    assert docs, f"no YAML documents in {KUBERNETES}"
    for path, doc in docs:
        kind = doc.get("kind")
        assert kind in API_VERSIONS, f"{path.name}: unexpected kind {kind!r}"
        assert doc.get("apiVersion") == API_VERSIONS[kind], \
            f"{path.name}: {kind} has apiVersion {doc.get('apiVersion')!r}, " \
            f"expected {API_VERSIONS[kind]!r}"
        assert doc.get("metadata", {}).get("name"), f"{path.name}: {kind} without a name"
    kinds = {doc["kind"] for _, doc in docs}
    assert kinds == set(API_VERSIONS), f"expected {sorted(API_VERSIONS)}, found {sorted(kinds)}"


def check_script(deployment: dict[str, Any]) -> str:
    script, _ = script_and_args(deployment)
    prefix = IMAGE_ROOT + "/"
    assert script.startswith(prefix), f"script {script} is not under {prefix}"
    rel = script[len(prefix):]
    assert (REPO / rel).is_file(), f"{script} maps to {rel}, which the repository lacks"
    assert rel == MULTIHOST_JOB_SCRIPT, \
        f"the manifest runs {rel}, the multi-host test runs {MULTIHOST_JOB_SCRIPT}"
    return rel


def check_driver(deployment: dict[str, Any], flink_version: str) -> None:
    spec = deployment["spec"]
    job = spec["job"]
    assert job.get("entryClass") == PYTHON_DRIVER, f"entryClass {job.get('entryClass')!r}"
    jar = f"local:///opt/flink/opt/flink-python-{flink_version}.jar"
    assert job.get("jarURI") == jar, f"jarURI {job.get('jarURI')!r}, expected {jar!r}"
    major, minor = flink_version.split(".")[:2]
    assert spec.get("flinkVersion") == f"v{major}_{minor}", \
        f"flinkVersion {spec.get('flinkVersion')!r} for Flink {flink_version}"
    args = [str(a) for a in job["args"]]
    assert args[0].startswith("-py"), \
        f"job.args {args}: PyFlink's options must come first, the script's after them"


def check_script_args(deployment: dict[str, Any], main: Any) -> dict[str, Any]:
    """Run the script's ``main`` on the manifest's arguments up to the point where it
    would start training (``main`` must call a patched ``train`` that raises)."""
    _, script_args = script_and_args(deployment)
    try:
        main(script_args)
    except _Parsed as parsed:
        return parsed.values
    except SystemExit as exc:  # argparse refused them
        raise AssertionError(f"the script rejects the manifest's arguments {script_args} "
                             f"(exit {exc.code})") from exc
    raise AssertionError("the script's main returned without training")


def check_layout(deployment: dict[str, Any], workers: int) -> None:
    spec = deployment["spec"]
    slots = int(spec["flinkConfiguration"]["taskmanager.numberOfTaskSlots"])
    parallelism = int(spec["job"]["parallelism"])
    assert parallelism >= workers, \
        f"parallelism {parallelism} < {workers} workers: too few slots for the ML cluster"
    task_managers = -(-parallelism // slots)
    assert task_managers == 2, f"{task_managers} TaskManagers, expected 2 (one rank on each)"


def check_python(deployment: dict[str, Any], venv_python: str) -> None:
    conf = deployment["spec"]["flinkConfiguration"]
    for key in ("python.executable", "python.client.executable"):
        assert conf.get(key) == venv_python, \
            f"{key} is {conf.get(key)!r}, the image's interpreter is {venv_python}"


def check_model_volume(docs: list[tuple[Path, dict[str, Any]]], deployment: dict[str, Any],
                       model_dir: str) -> None:
    claims = {doc["metadata"]["name"] for _, doc in docs
              if doc.get("kind") == "PersistentVolumeClaim"}
    pod = deployment["spec"]["podTemplate"]["spec"]
    volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"]
               for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
    mounts = [m for c in pod.get("containers", []) if c.get("name") == "flink-main-container"
              for m in c.get("volumeMounts", [])]
    under = [m for m in mounts if model_dir == m["mountPath"]
             or model_dir.startswith(m["mountPath"].rstrip("/") + "/")]
    assert under, f"--model-dir {model_dir} is on no volume of flink-main-container"
    claim = volumes.get(under[0]["name"])
    assert claim in claims, f"the model volume uses claim {claim!r}; the manifests define {claims}"


def check_no_placement_settings(docs: list[tuple[Path, dict[str, Any]]]) -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                _forbid(str(key), f"{where}.{key}")
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")
        elif isinstance(node, str):
            _forbid(node, where)

    for path, doc in docs:
        walk(doc, f"{path.name}:{doc.get('kind')}")


def _forbid(text: str, where: str) -> None:
    lowered = text.lower()
    for word in FORBIDDEN:
        assert word not in lowered, f"{where}: a flink-dl placement setting ({word!r})"


def check_copy_sources(instructions: list[tuple[str, str]]) -> None:
    copies = [args for word, args in instructions if word in ("COPY", "ADD")]
    assert copies, "the Dockerfile copies nothing"
    for args in copies:
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        assert len(parts) >= 2, f"COPY {args}: no source"
        for source in parts[:-1]:
            assert (REPO / source).exists(), f"COPY source {source} is not in the repository"


def check_pins(instructions: list[tuple[str, str]], pins: dict[str, str]) -> None:
    runs = " ".join(args for word, args in instructions if word == "RUN")
    for name in PINNED:
        assert name in pins, f"pyproject.toml does not pin {name}"
        found = set(re.findall(rf"(?<![\w-]){re.escape(name)}==([A-Za-z0-9_.+-]+)", runs))
        assert found == {pins[name]}, \
            f"the Dockerfile installs {name} {sorted(found) or 'unpinned'}, " \
            f"pyproject.toml pins {pins[name]}"
    torch_install = [args for word, args in instructions
                     if word == "RUN" and f"torch=={pins['torch']}" in args]
    assert any("download.pytorch.org/whl/cpu" in args for args in torch_install), \
        "torch is not installed from PyTorch's CPU index (the PyPI wheel pulls CUDA)"


def check_base_image(instructions: list[tuple[str, str]], flink_version: str) -> None:
    bases = [args.split()[0] for word, args in instructions if word == "FROM"]
    assert bases == [f"flink:{flink_version}-java17"], \
        f"base image {bases}, expected the official flink:{flink_version}-java17"


def check_image_python(instructions: list[tuple[str, str]]) -> str:
    """The venv interpreter the image sets up, checked to be on PATH and in Flink's conf."""
    env = " ".join(args for word, args in instructions if word == "ENV")
    match = re.search(r"FLINK_DL_VENV=(\S+)", env)
    assert match, "the Dockerfile defines no FLINK_DL_VENV"
    venv = match.group(1)
    assert venv.startswith(IMAGE_ROOT + "/"), f"venv {venv} outside {IMAGE_ROOT}"
    assert re.search(r"PATH=\$\{FLINK_DL_VENV\}/bin:", env), "the venv is not first on PATH"
    runs = " ".join(args for word, args in instructions if word == "RUN")
    assert "python3.11 -m venv" in runs, "the venv is not made with Python 3.11"
    for key in ("python.executable", "python.client.executable"):
        assert f"-D{key}=${{FLINK_DL_VENV}}/bin/python" in runs, f"{key} not set in the image"
    workdirs = [args for word, args in instructions if word == "WORKDIR"]
    assert IMAGE_ROOT in workdirs, f"the repository's files are not copied to {IMAGE_ROOT}"
    return f"{venv}/bin/python"


def check_image_has_no_placement_settings(instructions: list[tuple[str, str]]) -> None:
    for word, args in instructions:
        _forbid(args, f"Dockerfile {word}")


# -- the tests on the real files ---------------------------------------------------------

class _Parsed(Exception):  # noqa: N818 (a signal, not an error)
    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__(values)
        self.values = values


@pytest.fixture
def digits_main(monkeypatch: pytest.MonkeyPatch) -> Any:
    """examples/digits.py's ``main``, stopped where it would start the training job."""
    import flink_dl.log
    from examples import digits

    def train(model_dir: str, workers: int = 2, epochs: int = 15, **_: Any) -> None:
        raise _Parsed({"model_dir": model_dir, "workers": workers, "epochs": epochs})

    monkeypatch.setattr(digits, "train", train)
    monkeypatch.setattr(flink_dl.log, "configure_logging", lambda *a, **k: None)
    return digits.main


@pytest.fixture(scope="module")
def docs() -> list[tuple[Path, dict[str, Any]]]:
    return manifest_documents()


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text())


def test_manifests_parse_with_expected_kinds(docs: list) -> None:
    check_kinds(docs)


def test_deployment_runs_the_multihost_job_script(docs: list) -> None:
    assert check_script(flink_deployment(docs)) == MULTIHOST_JOB_SCRIPT


def test_multihost_tests_run_the_same_script() -> None:
    """Where the multi-host tests name an example, it is the manifest's."""
    named = set()
    for path in [*REPO.glob("tests/test_multihost*.py"), *REPO.glob("tests/multihost*.py")]:
        text = path.read_text()
        named |= set(re.findall(r"examples/\w+\.py", text))
        named |= {f"examples/{m}.py" for m in re.findall(r"from examples import (\w+)", text)}
        named |= {f"examples/{m}.py" for m in re.findall(r"\bexamples\.(\w+)", text)}
    if not named:
        pytest.skip("no multi-host test names an example script yet")
    assert MULTIHOST_JOB_SCRIPT in named, f"multi-host tests run {sorted(named)}"


def test_deployment_uses_the_python_driver_of_the_pinned_flink(docs: list) -> None:
    version = pyproject_pins()["apache-flink"]
    check_driver(flink_deployment(docs), version)
    import pyflink
    jar = Path(pyflink.__file__).parent / "opt" / f"flink-python-{version}.jar"
    assert jar.is_file(), f"Flink {version} ships no {jar.name} in opt/"


def test_script_accepts_the_manifest_arguments(docs: list, digits_main: Any) -> None:
    deployment = flink_deployment(docs)
    parsed = check_script_args(deployment, digits_main)
    _, args = script_and_args(deployment)
    assert parsed["model_dir"] == args[args.index("--model-dir") + 1]
    assert parsed["workers"] == int(args[args.index("--workers") + 1])
    check_layout(deployment, parsed["workers"])
    check_model_volume(docs, deployment, parsed["model_dir"])


def test_deployment_uses_the_image_python(docs: list, instructions: list) -> None:
    check_python(flink_deployment(docs), check_image_python(instructions))


def test_no_placement_settings(docs: list, instructions: list) -> None:
    check_no_placement_settings(docs)
    check_image_has_no_placement_settings(instructions)


def test_dockerfile_copies_what_exists(instructions: list) -> None:
    check_copy_sources(instructions)
    copied = {p for word, args in instructions if word == "COPY"
              for p in shlex.split(args)[:-1]}
    for needed in ("pyproject.toml", "README.md", "flink_dl/", "examples/"):
        assert needed in copied, f"the image does not COPY {needed}"


def test_dockerfile_pins_match_pyproject(instructions: list) -> None:
    pins = pyproject_pins()
    check_pins(instructions, pins)
    check_base_image(instructions, pins["apache-flink"])


# -- every check can fail ---------------------------------------------------------------

def _mutated(docs: list, change: Any) -> list:
    docs = copy.deepcopy(docs)
    change(docs)
    return docs


def _deployment_of(docs: list) -> dict[str, Any]:
    return flink_deployment(docs)


def _set_arg(docs: list, index: int, value: str) -> None:
    _deployment_of(docs)["spec"]["job"]["args"][index] = value


@pytest.mark.parametrize("change", [
    lambda d: d.append((Path("x.yaml"), {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "x"}})),
    lambda d: _deployment_of(d).update(apiVersion="flink.apache.org/v1alpha1"),
    lambda d: d.pop(0),
], ids=["unknown-kind", "wrong-api-version", "missing-pvc"])
def test_check_kinds_can_fail(docs: list, change: Any) -> None:
    with pytest.raises(AssertionError):
        check_kinds(_mutated(docs, change))


@pytest.mark.parametrize("script", ["/opt/flink-dl/examples/nope.py",
                                    "/opt/flink-dl/examples/tf_digits.py",
                                    "/opt/flink/usrlib/digits.py"])
def test_check_script_can_fail(docs: list, script: str) -> None:
    deployment = copy.deepcopy(flink_deployment(docs))
    args = deployment["spec"]["job"]["args"]
    args[args.index("-py") + 1] = script
    with pytest.raises(AssertionError):
        check_script(deployment)


@pytest.mark.parametrize("field,value", [("jarURI", "local:///opt/flink/opt/flink-python-2.2.0.jar"),
                                         ("entryClass", "org.example.Main"),
                                         ("args", ["--workers", "2", "-py", "/x.py"])])
def test_check_driver_can_fail(docs: list, field: str, value: Any) -> None:
    deployment = copy.deepcopy(flink_deployment(docs))
    deployment["spec"]["job"][field] = value
    with pytest.raises(AssertionError):
        check_driver(deployment, pyproject_pins()["apache-flink"])
    deployment = copy.deepcopy(flink_deployment(docs))
    deployment["spec"]["flinkVersion"] = "v2_2"
    with pytest.raises(AssertionError):
        check_driver(deployment, pyproject_pins()["apache-flink"])


@pytest.mark.parametrize("extra", [["--nodes", "2"], ["--workers", "two"]])
def test_check_script_args_can_fail(docs: list, digits_main: Any, extra: list) -> None:
    deployment = copy.deepcopy(flink_deployment(docs))
    deployment["spec"]["job"]["args"].extend(extra)
    with pytest.raises(AssertionError):
        check_script_args(deployment, digits_main)
    with pytest.raises(AssertionError):  # a main that never reaches training
        check_script_args(flink_deployment(docs), lambda argv: 0)


def test_check_layout_can_fail(docs: list) -> None:
    deployment = copy.deepcopy(flink_deployment(docs))
    with pytest.raises(AssertionError):
        check_layout(deployment, workers=3)
    deployment["spec"]["flinkConfiguration"]["taskmanager.numberOfTaskSlots"] = "2"
    with pytest.raises(AssertionError):
        check_layout(deployment, workers=2)


def test_check_python_and_volume_can_fail(docs: list) -> None:
    deployment = flink_deployment(docs)
    with pytest.raises(AssertionError):
        check_python(deployment, "/usr/bin/python3")
    with pytest.raises(AssertionError):
        check_model_volume(docs, deployment, "/data/digits")
    no_claim = _mutated(docs, lambda d: d.pop(0))
    with pytest.raises(AssertionError):
        check_model_volume(no_claim, flink_deployment(no_claim), "/models/digits")


@pytest.mark.parametrize("key,value", [("flink-dl.rendezvous", "dataflow"),
                                       ("bind_host", "0.0.0.0"),
                                       ("env.java.opts", "-Dx=1 advertise_host=10.0.0.1")])
def test_check_no_placement_settings_can_fail(docs: list, key: str, value: str) -> None:
    changed = _mutated(docs, lambda d: _deployment_of(d)["spec"]["flinkConfiguration"]
                       .update({key: value}))
    with pytest.raises(AssertionError):
        check_no_placement_settings(changed)
    with pytest.raises(AssertionError):
        check_image_has_no_placement_settings([("ENV", "FLINK_DL_BIND_HOST=0.0.0.0")])


def test_dockerfile_checks_can_fail(instructions: list) -> None:
    pins = pyproject_pins()
    with pytest.raises(AssertionError):
        check_copy_sources([*instructions, ("COPY", "no-such-dir/ ./x/")])
    for name in PINNED:
        changed = [(w, a.replace(f"{name}=={pins[name]}", f"{name}==0.0.1")) for w, a in
                   instructions]
        with pytest.raises(AssertionError):
            check_pins(changed, pins)
    no_cpu = [(w, a.replace("download.pytorch.org/whl/cpu", "download.pytorch.org/whl/cu128"))
              for w, a in instructions]
    with pytest.raises(AssertionError):
        check_pins(no_cpu, pins)
    with pytest.raises(AssertionError):
        check_base_image([("FROM", "flink:2.2.0-java17"), *instructions[1:]],
                         pins["apache-flink"])
    with pytest.raises(AssertionError):
        check_image_python([(w, a.replace("python3.11", "python3.12")) for w, a in instructions])


def test_dockerfile_parser_joins_continuations() -> None:
    parsed = dockerfile_instructions("FROM a\n# c\nRUN x \\\n    # inner\n    y\nCOPY b c\n")
    assert parsed == [("FROM", "a"), ("RUN", "x y"), ("COPY", "b c")]
