"""The benchmark suite of issue 5: `python -m bench` (see bench/__main__.py).

Not part of the test suite: it measures, it does not assert. The targets it checks are
printed PASS/FAIL in bench/RESULTS.md, which every run rewrites.
"""
