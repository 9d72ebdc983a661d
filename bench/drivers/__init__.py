"""How benchmarks are run, timed and reported: the command line, result tables, plots,
the CPU sampler and the run-order helpers (interleaved runs, medians, steady rates).
Drivers import no workload or baseline."""
