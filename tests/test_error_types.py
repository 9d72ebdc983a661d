"""Every error flink-dl raises is a ``FlinkDLError`` (errors.py's promise), found by reading
the source: a ``raise`` of a built-in exception class anywhere in the package fails here."""

from __future__ import annotations

import ast
import builtins
import inspect
from pathlib import Path

import flink_dl
from flink_dl import errors

PACKAGE = Path(flink_dl.__file__).parent
BUILTIN_ERRORS = {name for name, value in vars(builtins).items()
                  if inspect.isclass(value) and issubclass(value, BaseException)}


def raised_builtins(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id in BUILTIN_ERRORS:
                found.append(f"{path.relative_to(root)}:{node.lineno} "
                             f"raise {target.id}")
    return found


def test_no_module_raises_a_builtin_exception() -> None:
    offenders = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in raised_builtins(path)]
    assert offenders == []


def test_every_error_class_is_a_flink_dl_error() -> None:
    classes = [value for value in vars(errors).values()
               if inspect.isclass(value) and issubclass(value, BaseException)]
    assert len(classes) > 20
    assert all(issubclass(cls, errors.FlinkDLError) for cls in classes)


def test_the_scan_finds_a_builtin_raise(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    raise ValueError('x')\n\n\ndef g():\n    raise KeyError\n")
    assert raised_builtins(module, tmp_path) == ["probe.py:2 raise ValueError",
                                                 "probe.py:6 raise KeyError"]
