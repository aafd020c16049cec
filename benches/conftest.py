"""Benchmarks run on purpose, not in the default test run:

    pip install -e '.[bench]' && pytest benches --benchmark-only --benchmark-group-by=group

Each comparison is in one group so pytest-benchmark prints the libraries side by side.
"""
