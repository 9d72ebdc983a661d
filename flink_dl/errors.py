"""Exceptions raised by flink-dl."""

from __future__ import annotations


class FlinkDLError(Exception):
    """Base class of every error raised by flink-dl.

    An error raised for a job (``flink_dl.execute``, ``translate_errors``) names the job in
    its message and in ``job_id``: the ML cluster's ``job_id`` (what ``flink-dl cleanup``
    takes), else Flink's job id; ``None`` when raised for no job."""

    job_id: str | None = None


class ConfigError(FlinkDLError, ValueError):
    """A cluster configuration is invalid; the message names the key at fault."""


class AuthenticationError(FlinkDLError):
    """A peer failed to prove it belongs to the job (wrong per-job secret)."""


class ProtocolError(FlinkDLError):
    """A control-plane message was malformed, oversized or unexpected."""


class ClusterTimeoutError(FlinkDLError, TimeoutError):
    """A wait of the ML cluster ran past its configured timeout (the message names the key)."""


class NodeFailedError(FlinkDLError):
    """A node's entry failed; the message names the role and index and carries the traceback."""


class ClusterFailedError(FlinkDLError):
    """The ML cluster as a whole went to the FAILED state."""


class MissingColumnError(ConfigError, KeyError):
    """A column the job asks for is not in the input; the message names it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class FeatureTypeError(ConfigError, TypeError):
    """A feature or label column has a type that is not numeric; names column and type."""


class InvalidValueError(FlinkDLError, ValueError):
    """A row had a value a pipeline stage refuses (``handle_invalid="error"``): NULL, NaN,
    an unseen category or a value outside the splits; names the stage, column and value."""


class EmptyInputError(FlinkDLError):
    """A bounded training input had no rows: nothing to train on, nothing is published."""


class InputEpochError(FlinkDLError, RuntimeError):
    """A loop read the node's input in a way its epochs do not allow (the message says how)."""


class SlotsUnavailableError(FlinkDLError):
    """Flink could not get the task slots a job (or its restart) needs; the message says
    where to look."""


class ClusterNodeFailedError(NodeFailedError, ClusterFailedError):
    """The AM's error when the ML cluster failed because a node failed: the message starts
    with that node's report (role, index, its entry's traceback, its stderr tail), then the
    cluster's state. Both a ``NodeFailedError`` and a ``ClusterFailedError``."""


class ReferenceMismatchError(ConfigError):
    """A drift reference does not fit the rows it is compared with: columns missing, or
    values in another space (raw input vs a pipeline's served features); names both."""


class ArgumentTypeError(ConfigError, TypeError):
    """An argument has a type the call cannot use (the message names it and the type)."""


class InvalidStateError(FlinkDLError, RuntimeError):
    """An operation was called when its object's state does not allow it (a closed output,
    a node without a reserved socket, an input that is not exactly-once, ...)."""


class EngineError(FlinkDLError, RuntimeError):
    """Flink, its JVM or a framework answered something flink-dl cannot work with."""


class CorruptDataError(FlinkDLError, ValueError):
    """Bytes read from a channel, a restore frame or a wire message are not in the expected
    format (the message says which and how)."""


class ControlConnectionError(FlinkDLError, ConnectionError):
    """The control-plane connection between a node and the AM closed or stopped answering."""


class NotFoundError(FlinkDLError, FileNotFoundError):
    """A model version, checkpoint or saved pipeline the call asks for does not exist."""


class OwnershipError(FlinkDLError, PermissionError):
    """A directory or file flink-dl would share belongs to another user."""


class WaitTimeoutError(FlinkDLError, TimeoutError):
    """A wait outside the ML cluster (for a model version, a prewarmed process, ...) ran
    past its timeout; the message names the setting."""


class ModelOutputError(FlinkDLError, ValueError):
    """A model handler returned output of a shape or columns ``predict`` cannot use."""


class UnsupportedOperationError(FlinkDLError, NotImplementedError):
    """The object does not support this operation (the message says what does)."""


class MissingAttributeError(FlinkDLError, AttributeError):
    """A package has no such public attribute."""
