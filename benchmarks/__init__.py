"""Benchmarks (not tests): ``python -m benchmarks.run_all`` writes results.json and RESULTS.md."""
