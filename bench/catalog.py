"""Every benchmark, registered in the order ``python -m bench`` runs them: each turns the
command line's settings into its workload's call and titles the tables it prints.

Workloads are imported when their benchmark runs, so listing the benchmarks starts no
JVM and imports no framework.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from bench.registry import Output, Plot, Settings, Table, register

DOCS = Path(__file__).resolve().parent.parent / "docs"


@register("startup", "ML cluster start-up, 6 nodes, local mini-cluster",
          goal="job start (AM open) -> all 6 nodes RUNNING < 3 s")
def startup(settings: Settings) -> Iterator[Output]:
    from bench.workloads import cluster_startup

    yield Table("ML cluster start-up, 6 nodes, local mini-cluster (median of "
                f"{settings.repeats}; baseline = same topology of no-op Python operators)",
                cluster_startup.measure(settings.repeats))


@register("demo", "Digits demo start-up, execute -> every rank training",
          goal="first batch on every rank <= 8 s")
def demo(settings: Settings) -> Iterator[Output]:
    from bench.workloads import demo_startup

    yield Table("Digits demo start-up, execute -> every rank training (2 ranks, embedded "
                f"mini-cluster, a fresh interpreter per run, {settings.repeats} runs; "
                "goal: first batch on every rank <= 8 s)", demo_startup.measure(settings.repeats))


@register("multihost", "ML cluster start-up, 6 nodes, one host vs three hosts")
def multihost(settings: Settings) -> Iterator[Output]:
    from bench.workloads import multihost_startup

    yield Table("ML cluster start-up, 6 nodes, flink run on a real cluster (JobManager + 2 "
                "TaskManagers): one host vs three network-namespace hosts sharing nothing "
                f"(median of {settings.repeats})", multihost_startup.measure(settings.repeats))


@register("recovery", "Recovery, kill -> every node of the new attempt running",
          goal="SIGKILL of a node entry or a Flink Python worker -> all 6 nodes running <= 10 s")
def recovery(settings: Settings) -> Iterator[Output]:
    from bench.workloads import recovery as workload

    yield Table("Recovery, AM + 6 nodes, local mini-cluster, process mode (median of "
                f"{settings.repeats}; kill -> every node of the new attempt running)",
                workload.measure(settings.repeats))


@register("channel", "Shared-memory channel vs memcpy")
def channel(settings: Settings) -> Iterator[Output]:
    from bench.workloads import data_plane

    yield Table("Shared-memory channel, two processes, vs memcpy of the same bytes",
                data_plane.channel_table())


@register("ingest", "Flink source -> nodes counting rows, vs source -> blackhole")
def ingest(settings: Settings) -> Iterator[Output]:
    from bench.workloads import data_plane

    yield Table(f"Flink source -> nodes counting rows, {settings.rows:,} rows x 16 float32 "
                "(steady rates: large minus 1,000-row job; loopback mode)",
                data_plane.end_to_end(settings.rows, row_path_rows=200_000))


@register("memory", "Peak memory as the input grows")
def memory(settings: Settings) -> Iterator[Output]:
    from bench.workloads import data_plane

    yield Table("Peak memory as the input grows (1 node, datagen)",
                data_plane.memory_growth((settings.rows // 2, settings.rows * 2)))


@register("w1", "W1: CSV -> DDP training, vs plain PyTorch and Ray Train",
          goal=">= 0.7 of the limit, >= 2x Ray's samples/s, <= 0.5x its wall")
def w1(settings: Settings) -> Iterator[Output]:
    from bench.workloads import training

    table, cpu = training.w1_table(settings.rows, settings.repeats)
    yield Table(f"W1: CSV -> DDP training, {settings.rows:,} rows x 16 float32 + label, MLP "
                "16-64-64-1, batch 1024 per worker, 2 workers, 1 epoch; median of "
                f"{settings.repeats} interleaved runs (goals: >= 0.7 of the limit, >= 2x "
                "Ray's samples/s, <= 0.5x its wall)", table)
    yield Table("W1, flink-dl run: CPU seconds per kind of process (2 cores)", cpu)


@register("w1tf", "W1-TF: CSV -> Keras, vs plain tf.distribute",
          goal=">= 0.7 of plain tf.distribute")
def w1tf(settings: Settings) -> Iterator[Output]:
    from bench.workloads import tf_training

    table, cpu = tf_training.tf_w1_table(settings.rows, settings.repeats)
    yield Table(f"W1-TF: CSV -> Keras under MultiWorkerMirroredStrategy, {settings.rows:,} "
                "rows, MLP 16-64-64-1, global batch 2048 (1024 per worker), 2 workers, 1 "
                f"epoch; median of {settings.repeats} interleaved runs (goal >= 0.7 of plain "
                "tf.distribute)", table)
    yield Table("W1-TF, flink-dl run: CPU seconds per kind of process (2 cores)", cpu)


@register("drift", "Real-time loop across a concept drift",
          goal="online within 2 points of pre-drift accuracy, recovery <= 60 s of event time")
def drift(settings: Settings) -> Iterator[Output]:
    from bench.workloads import drift as workload

    yield Table("Real-time loop across a concept drift at 60 s (2,000 rows/s of event time; "
                "baseline = the static batch model on the same rows, same run)",
                workload.measure())


@register("online", "Online learning against River, prequential",
          goal="the README loop, cold and warm, >= River's accuracy on Phishing at 1x and 5x")
def online(settings: Settings) -> Iterator[Output]:
    from bench.workloads import online as workload

    accuracy, throughput = workload.measure()
    yield Table("The README's real-time loop vs River (StandardScaler | LogisticRegression) "
                "on the same rows, prequential accuracy of what was served (labels arrive "
                "with their requests; River in its own environment, same run)", accuracy)
    yield Table("The loop's sustained training rate, input all there (60,000 rows of the "
                "drifting stream; River's rate from the same run, in one process)",
                throughput)


@register("online-soak", "Disk and memory soak of the real-time loop (cold start)",
          goal="disk use flat (within ±10 %) after warm-up")
def online_soak(settings: Settings) -> Iterator[Output]:
    from bench.drivers.plots import soak_plot
    from bench.workloads import online_soak as workload

    warmup = min(120.0, settings.soak_seconds / 5)
    table, curve = workload.measure(settings.soak_seconds, warmup_s=warmup)
    yield Table(f"Real-time loop soak, {settings.soak_seconds:.0f} s: the README's cold-start "
                "loop (predict, join_labels, OnlineStandardScaler and FTRL learning) on 200 "
                "rows/s of datagen; disk = the pipeline and model directories (versions and "
                f"checkpoints); warm-up {warmup:.0f} s", table)
    path = DOCS / "online_soak.png"
    soak_plot(curve, ("disk MiB",), warmup, path, ylabel="MiB on disk (pipeline + model dirs)",
              title="Real-time loop soak: disk use of versions and checkpoints")
    yield Plot(path)


@register("w3", "W3: batch inference, vs plain PyTorch")
def w3(settings: Settings) -> Iterator[Output]:
    from bench.workloads import inference

    yield Table(f"W3: batch inference, {settings.rows:,} rows, MLP 16-256-256-1, batches of "
                "4096, 1 torch thread per process", inference.w3_table(settings.rows))


@register("pipeline", "Pipeline transform, vs hand-written SQL and scikit-learn")
def pipeline(settings: Settings) -> Iterator[Output]:
    from bench.workloads import pipeline as workload
    from bench.workloads import pipeline_categories

    yield Table("Pipeline transform of generated rows, a fitted 6-stage feature "
                "pipeline vs the same features hand-written in Flink SQL and vs "
                f"scikit-learn in a pandas UDF (parallelism 1, median of {settings.repeats}; "
                "blackhole sink)", workload.measure(settings.rows, settings.repeats))
    yield Table("Pipeline: planning time against the number of categories "
                "(StringIndexer / OneHotEncoder models, parallelism 1)",
                pipeline_categories.category_planning())


@register("latency", "Streaming predict latency, arrival -> prediction")
def latency(settings: Settings) -> Iterator[Output]:
    from bench.drivers.plots import latency_plot
    from bench.workloads import latency as workload

    table, points = workload.measure()
    yield Table("Streaming predict latency, arrival -> prediction (parallelism 1, MLP "
                "16-256-256-1; baseline = the same job with default settings, same run)",
                table)
    path = DOCS / "latency.png"
    latency_plot(points, path)
    yield Plot(path)


@register("soak", "Memory soak, streaming training + streaming predict",
          goal="RSS per kind of process within ±10 % after warm-up")
def soak(settings: Settings) -> Iterator[Output]:
    from bench.drivers.plots import soak_plot
    from bench.workloads import soak as workload

    warmup = min(120.0, settings.soak_seconds / 5)
    table, curve = workload.measure(settings.soak_seconds, warmup_s=warmup)
    yield Table(f"Memory soak, {settings.soak_seconds:.0f} s of streaming training (2 ranks, "
                "2,000 rows/s) + streaming predict (2,000 rows/s), process mode; RSS "
                f"summed per kind of process, warm-up {warmup:.0f} s", table)
    path = DOCS / "soak.png"
    soak_plot(curve, workload.KINDS, warmup, path)
    yield Plot(path)
