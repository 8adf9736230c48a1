"""Benchmarks (speed is measured here, never in tests): ratios against a baseline run in
the same process, so numbers compare across machines."""
