"""Serialising a node entry so it travels with the job and loads in the node process."""

from __future__ import annotations

import inspect
import sys
import sysconfig
from pathlib import Path

import cloudpickle

from flink_dl.config import EntryFn

_LIBRARY_ROOTS = tuple(
    str(Path(p).resolve()) for p in {sysconfig.get_paths()["purelib"],
                                     sysconfig.get_paths()["platlib"],
                                     sysconfig.get_paths()["stdlib"]}
)


def serialize_entry(entry: EntryFn | str) -> bytes:
    """Pickle the entry (cloudpickle) for the node process.

    A ``"module:function"`` reference travels as the string. A callable from the user's own
    code (the job script, a test module, a file not installed as a package) is pickled *by
    value*, so Flink's Python workers and node processes need not import its module.
    """
    if isinstance(entry, str):
        return cloudpickle.dumps(entry)
    module = inspect.getmodule(entry)
    by_value = module is not None and _is_user_module(module)
    if by_value:
        assert module is not None
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps(entry)
    finally:
        if by_value:
            assert module is not None
            cloudpickle.unregister_pickle_by_value(module)


def _is_user_module(module: object) -> bool:
    name = getattr(module, "__name__", "")
    if name == "__main__" or name.split(".")[0] == "flink_dl" or name in sys.builtin_module_names:
        return False
    path = getattr(module, "__file__", None)
    if not path:
        return False
    resolved = str(Path(path).resolve())
    return not resolved.startswith(_LIBRARY_ROOTS)
