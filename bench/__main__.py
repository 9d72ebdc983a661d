"""Run the registered benchmarks: ``python -m bench [--only a,b] [--list]``."""

from bench.drivers.cli import main

if __name__ == "__main__":
    main()
