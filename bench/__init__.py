"""The service's benchmarks: `python -m bench` (see bench/__main__.py), with the longer
`python -m bench.soak` and `python -m bench.capacity`.

Not part of the test suite: it measures, it does not assert. The targets it checks are
printed PASS/FAIL in bench/RESULTS.md, which every run rewrites.
"""
