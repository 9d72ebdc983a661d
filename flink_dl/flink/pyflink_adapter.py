"""The one place flink-dl reaches into PyFlink's private attributes and internal helpers.

PyFlink wraps Java objects and keeps the Java side in private attributes (``_j_*``,
``_t_env``); flink-dl needs some of them (Java configurations, transformations, resolved
schemas). Every such access is a small function here whose docstring names the PyFlink
internal it relies on, so a PyFlink upgrade has one module to check (written against
PyFlink 2.3). Imports of PyFlink happen inside the functions: this module is cheap to
import and may be used where PyFlink is not loaded yet.

May import: PyFlink only (no flink-dl module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyflink.common import JobClient
    from pyflink.common.typeinfo import TypeInformation
    from pyflink.datastream import (
        DataStream,
        KeyedStream,
        OutputTag,
        StreamExecutionEnvironment,
    )
    from pyflink.table import Table, TableEnvironment

# ---------------------------------------------------------------- environments


def j_env(env: StreamExecutionEnvironment) -> Any:
    """The Java ``StreamExecutionEnvironment`` of ``env``
    (``StreamExecutionEnvironment._j_stream_execution_environment``)."""
    return env._j_stream_execution_environment


def j_env_config(env: StreamExecutionEnvironment) -> Any:
    """The Java ``Configuration`` of ``env``, live (changes apply to the next job)
    (``_j_stream_execution_environment.getConfiguration()``)."""
    return env._j_stream_execution_environment.getConfiguration()


def env_setting(env: StreamExecutionEnvironment, key: str) -> Any:
    """The raw value of option ``key`` in ``env``'s Java configuration, ``None`` when unset
    (read through :func:`j_env_config`)."""
    return j_env_config(env).toMap().get(key)


def env_transformations(j_stream_env: Any) -> Any:
    """The live Java list of transformations a Java ``StreamExecutionEnvironment`` will run
    (its private field ``transformations``, read with PyFlink's internal
    ``pyflink.util.java_utils.get_field_value``)."""
    from pyflink.util.java_utils import get_field_value

    return get_field_value(j_stream_env, "transformations")


def is_local_deployment(j_config: Any) -> bool:
    """Whether a job configured by the Java ``Configuration`` ``j_config`` runs on the
    embedded mini-cluster (PyFlink's internal
    ``pyflink.util.java_utils.is_local_deployment``)."""
    from pyflink.util.java_utils import is_local_deployment as local

    return bool(local(j_config))


# ---------------------------------------------------------------- data streams


def transformation_of(stream: DataStream) -> Any:
    """The Java ``Transformation`` that produces ``stream``
    (``_j_data_stream.getTransformation()``)."""
    return stream._j_data_stream.getTransformation()


def j_env_of_stream(stream: DataStream) -> Any:
    """The Java ``StreamExecutionEnvironment`` ``stream`` belongs to
    (``_j_data_stream.getExecutionEnvironment()``)."""
    return stream._j_data_stream.getExecutionEnvironment()


def env_of_stream(stream: DataStream) -> StreamExecutionEnvironment:
    """A Python ``StreamExecutionEnvironment`` wrapping the one ``stream`` belongs to
    (:func:`j_env_of_stream`, wrapped with the Java-object constructor)."""
    from pyflink.datastream import StreamExecutionEnvironment

    return StreamExecutionEnvironment(j_env_of_stream(stream))


def set_output_type(stream: DataStream, type_info: TypeInformation) -> DataStream:
    """Declare the Java output type of ``stream``'s transformation (what a following Python
    operator decodes); returns ``stream`` (``TypeInformation.get_java_type_info()`` on
    ``_j_data_stream.getTransformation()``)."""
    transformation_of(stream).setOutputType(type_info.get_java_type_info())
    return stream


def side_output(stream: DataStream, tag: OutputTag) -> DataStream:
    """The side output ``tag`` of ``stream`` as Flink has it, without the Python identity
    map PyFlink's ``get_side_output`` adds (``_j_data_stream.getSideOutput`` with
    ``OutputTag.get_java_output_tag()``, wrapped by the ``DataStream`` constructor)."""
    from pyflink.datastream import DataStream

    return DataStream(stream._j_data_stream.getSideOutput(tag.get_java_output_tag()))


def key_by_first_field(stream: DataStream, key_type: TypeInformation,
                       value_type: TypeInformation) -> KeyedStream:
    """``stream`` keyed in the JVM by the first field of its ``Row`` records, with no Python
    key selector: what PyFlink's ``key_by`` does internally (its Java
    ``KeyByKeySelector`` on field 0, and the ``KeyedStream(j_keyed_stream,
    original_type_info, origin_stream)`` constructor). ``key_type`` is the ``Row`` of the
    key field, ``value_type`` the records' type."""
    from pyflink.datastream import KeyedStream
    from pyflink.java_gateway import get_gateway

    j_keyed = stream._j_data_stream.keyBy(get_gateway().jvm.KeyByKeySelector(),
                                          key_type.get_java_type_info())
    return KeyedStream(j_keyed, value_type, stream)


#: Where :func:`wrap_chaining_optimization` keeps PyFlink's own method.
_ORIGINAL_CHAINING = "_flink_dl_original_apply_chaining_optimization"


def wrap_chaining_optimization(
        wrap: Callable[[Callable[[DataStream], None]], Callable[[DataStream], None]]) -> bool:
    """Replace PyFlink's private ``DataStream._apply_chaining_optimization`` (what
    ``execute_and_collect`` calls first) with ``wrap(original)``, once per process; returns
    whether it was replaced now. Not thread-safe: the caller holds a lock."""
    from pyflink.datastream import DataStream

    if hasattr(DataStream, _ORIGINAL_CHAINING):
        return False
    original = DataStream._apply_chaining_optimization
    setattr(DataStream, _ORIGINAL_CHAINING, original)
    DataStream._apply_chaining_optimization = wrap(original)
    return True


# ---------------------------------------------------------------- tables


def table_env_of(table: Table) -> TableEnvironment:
    """The Python ``TableEnvironment`` ``table`` was made by (``Table._t_env``)."""
    return table._t_env


def resolved_schema(table: Table) -> Any:
    """The Java ``ResolvedSchema`` of ``table``, from the planner with no job
    (``Table._j_table.getResolvedSchema()``)."""
    return table._j_table.getResolvedSchema()


def without_time_attribute(j_data_type: Any) -> Any:
    """A Java ``DataType`` with its time attribute (rowtime/proctime) removed, as a plain
    column declares it (Flink's ``@Internal`` ``DataTypeUtils.removeTimeAttribute``, reached
    through PyFlink's gateway)."""
    from pyflink.java_gateway import get_gateway

    utils = get_gateway().jvm.org.apache.flink.table.types.utils.DataTypeUtils
    return utils.removeTimeAttribute(j_data_type)


def j_exec_env_of_table_env(t_env: TableEnvironment) -> Any | None:
    """The Java ``StreamExecutionEnvironment`` under a ``StreamTableEnvironment``; ``None``
    for a table environment without one (``TableEnvironment._j_tenv.execEnv()``)."""
    j_tenv = t_env._j_tenv
    if not hasattr(j_tenv, "execEnv"):
        return None
    return j_tenv.execEnv()


def j_env_config_of_table_env(t_env: TableEnvironment) -> Any:
    """The Java ``Configuration`` of the stream environment under ``t_env``
    (``TableEnvironment._get_j_env()`` and PyFlink's internal
    ``pyflink.util.java_utils.get_j_env_configuration``)."""
    from pyflink.util.java_utils import get_j_env_configuration

    return get_j_env_configuration(t_env._get_j_env())


def j_table_config(t_env: TableEnvironment) -> Any:
    """The Java ``Configuration`` of ``t_env``'s own table config, laid over the
    environment's when a job runs (``TableConfig._j_table_config.getConfiguration()``)."""
    return t_env.get_config()._j_table_config.getConfiguration()


# ---------------------------------------------------------------- jobs


def j_job_client(client: JobClient) -> Any:
    """The Java ``JobClient`` behind ``client`` (``JobClient._j_job_client``), for calls
    PyFlink does not wrap (``stopWithSavepoint`` with a format, ``getJobExecutionResult``)."""
    return client._j_job_client
