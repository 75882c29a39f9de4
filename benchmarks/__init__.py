"""Benchmark scripts; ``python -m benchmarks`` (``make bench``) runs them all."""
