"""flink-dl's own exceptions out of a failed Flink job, not a ``Py4JJavaError`` of 500 lines.

A node's ``NodeFailedError`` (or the AM's ``ClusterFailedError``) is raised in a Python
worker; Flink wraps it in Java exceptions, and PyFlink hands the client a ``Py4JJavaError``
whose text holds the Python exception somewhere among the Java and Beam frames.
``flink_dl_error`` finds it in that text and rebuilds it: the message starts with the
failed node and its entry's traceback, and the Java error stays as ``__cause__``.
``flink_dl.execute`` does this by itself; ``translate_errors()`` does it for code that runs
jobs another way (and gives ``os.environ`` back as it found it, like ``execute``)::

    with flink_dl.translate_errors():
        rows = list(stream.execute_and_collect())
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Iterator, Sequence

from flink_dl.errors import FlinkDLError, InvalidValueError, SlotsUnavailableError

#: A Python exception line of a flink-dl error, as tracebacks print it.
_HEADER = re.compile(r"^(flink_dl(?:\.\w+)*)\.([A-Z]\w*): ", re.MULTILINE)
#: Where the Python part of a Java exception's message ends.
_JAVA_LINE = re.compile(r"^(\tat |\t\.\.\. \d+ more|Caused by: |Suppressed: )")
#: The text of a pipeline stage's failing cast (``flink_dl.pipeline.sql.raise_invalid``).
_INVALID_VALUE = re.compile(r"For input string: 'flink-dl invalid value in (.*?)'\. Invalid "
                            r"character found", re.DOTALL)
#: The most telling first: the node that failed, then the cluster's view, then any other.
_PREFERENCE = ("NodeFailedError", "ClusterNodeFailedError", "ClusterTimeoutError",
               "ClusterFailedError")


def flink_dl_error(exc: BaseException) -> FlinkDLError | None:
    """The flink-dl exception a failed job's error carries (``__cause__`` = ``exc``), or
    ``None`` when it carries none (``exc`` itself is one: ``exc``)."""
    if isinstance(exc, FlinkDLError):
        return exc
    text = str(exc)
    invalid = _INVALID_VALUE.search(text)
    if invalid:  # a pipeline stage's SQL refused a value (flink_dl.pipeline.sql)
        error: FlinkDLError = InvalidValueError(f"invalid value in {invalid.group(1)}")
        error.__cause__ = exc
        return error
    found: list[tuple[int, type[FlinkDLError], str]] = []
    for match in _HEADER.finditer(text):
        name = match.group(2)
        cls = _error_class(match.group(1), name)
        if cls is None:
            continue
        rank = _PREFERENCE.index(name) if name in _PREFERENCE else len(_PREFERENCE)
        found.append((rank, cls, _message_at(text, match.end())))
        if rank == 0:
            break
    if not found:
        return _slots_unavailable(text, exc)
    _, cls, message = min(found, key=lambda item: item[0])
    try:
        error = cls(message)
    except TypeError:  # a subclass with a constructor of its own
        error = FlinkDLError(f"{cls.__name__}: {message}")
    error.__cause__ = exc
    return error


def _slots_unavailable(text: str, exc: BaseException) -> FlinkDLError | None:
    """A job that failed for want of task slots: say what that means, and where to look."""
    if "NoResourceAvailableException" not in text:
        return None
    error = SlotsUnavailableError(
        "the job could not get the task slots it needs (Flink: NoResourceAvailableException). "
        "On a cluster: it has fewer free slots than the job's parallelism (add TaskManagers "
        "or slots, or lower the parallelism). On the embedded mini-cluster, whose slots "
        "match the job: its TaskManager stopped, e.g. after a FATAL error in a task, and "
        f"every restart then fails like this; Flink's log says why ({_local_flink_log_dir()})")
    error.__cause__ = exc
    return error


def _local_flink_log_dir() -> str:
    """Where the embedded mini-cluster (PyFlink's gateway JVM) writes its log."""
    import os

    import pyflink

    return os.path.join(os.path.dirname(os.path.abspath(pyflink.__file__)), "log")


def name_job(error: FlinkDLError, cluster_job_ids: Sequence[str],
             flink_job_id: str | None = None) -> FlinkDLError:
    """Give ``error`` its job: ``job_id`` (the first ML cluster's id, else Flink's), and a
    last line naming the ids its message lacks."""
    ids = list(dict.fromkeys(i for i in (*cluster_job_ids, flink_job_id) if i))
    if not ids:
        return error
    error.job_id = ids[0]
    text = str(error)
    if all(job_id in text for job_id in ids) or not (error.args and
                                                     isinstance(error.args[0], str)):
        return error
    names = [f"ML cluster job_id {job_id}" for job_id in cluster_job_ids]
    if flink_job_id and flink_job_id not in cluster_job_ids:
        names.append(f"Flink job {flink_job_id}")
    error.args = (f"{error.args[0]}\n({'; '.join(names)})", *error.args[1:])
    return error


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Raise the flink-dl exception a failed job carries instead of Flink's error (kept
    as ``__cause__``); other errors pass unchanged. ``os.environ`` is given back as it was
    found (``startup.client_env.restored_environ``: a local job's loopback workers leave
    variables that break Python processes started later)."""
    from flink_dl.flink.job_id import submission_mark
    from flink_dl.flink.planner_threads import install as plan_on_any_thread
    from flink_dl.startup.client_env import restored_environ

    plan_on_any_thread()
    mark = submission_mark()
    with restored_environ():
        try:
            yield
        except FlinkDLError as exc:
            _name_submitted_job(exc, mark)
            raise
        except Exception as exc:
            error = flink_dl_error(exc)
            if error is None:
                raise
            raise _name_submitted_job(error, mark) from exc


def _name_submitted_job(error: FlinkDLError, mark: int) -> FlinkDLError:
    """Name the job with ML clusters submitted in ``translate_errors``'s block."""
    from flink_dl.flink.job_id import submissions_since

    submitted = submissions_since(mark)
    if submitted:
        name_job(error, submitted[-1].cluster_job_ids, submitted[-1].flink_job_id)
    return error


def _error_class(module: str, name: str) -> type[FlinkDLError] | None:
    try:
        cls = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    if isinstance(cls, type) and issubclass(cls, FlinkDLError):
        return cls
    return None


def _message_at(text: str, start: int) -> str:
    """The Python exception message that starts at ``start``: up to the first line of
    Java stack or cause, without trailing blank lines."""
    lines = []
    for line in text[start:].split("\n"):
        if _JAVA_LINE.match(line):
            break
        lines.append(line)
    return "\n".join(lines).rstrip()
