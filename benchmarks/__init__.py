"""Benchmarks: run with ``make bench`` (``python -m benchmarks``). Not timed tests."""
