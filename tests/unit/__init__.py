"""The fast tier: tests of pure code, with no process and no Redis server, that run
in seconds on their own (`.venv/bin/pytest tests/unit -q`; docs/testing.md)."""
