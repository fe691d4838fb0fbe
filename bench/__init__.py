"""The benchmark's parts; `bench/benchmark.py` runs them and writes outputs/bench/."""
