"""Structure rules, read from the source (issue 28): settings are typed, user switches are
read in one module, PyFlink's private attributes are touched in one adapter module, and a
long module says why it is long."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import flink_dl

PACKAGE = Path(flink_dl.__file__).parent
SETTINGS_MODULE = PACKAGE / "settings.py"
ADAPTER_MODULE = PACKAGE / "flink" / "pyflink_adapter.py"
MAX_LINES = 400


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def hits(pattern: str, *, outside: Path | None = None) -> list[str]:
    regex = re.compile(pattern)
    return [f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
            for path in sources() if path != outside
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if regex.search(line)]


def test_no_string_keyed_options() -> None:
    assert hits(r"""options\.get\(["']""") == []


def test_user_switches_are_read_in_the_settings_module_only() -> None:
    assert SETTINGS_MODULE.exists()
    assert hits(r"""environ(\.get\(|\[)\s*["']FLINK_DL_""", outside=SETTINGS_MODULE) == []
    assert hits(r"""getenv\(\s*["']FLINK_DL_""", outside=SETTINGS_MODULE) == []


def test_pyflink_private_attributes_live_in_the_adapter_only() -> None:
    assert ADAPTER_MODULE.exists()
    assert hits(r"\._j_\w+|\._t_env\b|\._get_j_env\b|\._j_env\b", outside=ADAPTER_MODULE) == []


def test_a_long_module_says_why_in_its_docstring() -> None:
    long = []
    for path in sources():
        text = path.read_text()
        if text.count("\n") > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "long because" not in doc.lower():
                long.append(f"{path.relative_to(PACKAGE.parent)}: {text.count(chr(10))} lines")
    assert long == []


def test_importing_flink_dl_changes_no_environment_variable() -> None:
    import os
    import subprocess
    import sys

    code = ("import json, os; before = dict(os.environ); import flink_dl; "
            "print(json.dumps(sorted(k for k in set(before) | set(os.environ) "
            "if before.get(k) != os.environ.get(k))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ}).stdout
    assert out.strip() == "[]"
