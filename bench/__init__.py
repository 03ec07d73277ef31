"""Benchmark harness: `python -m bench` (or `make bench`). See the README's "Performance" section."""
