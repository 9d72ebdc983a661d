"""Exceptions raised by flink-dl."""

from __future__ import annotations


class FlinkDLError(Exception):
    """Base class of every error raised by flink-dl."""


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
