"""The suite's fixtures: a Redis server the suite starts on a free port, the
service against it (tests/support/stack.py), a fresh account per test, and the
processes' logs printed when a test that used them fails. Nothing here talks to a
server it did not start; what the tests share beyond fixtures is in tests/support."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator import redis_server
from tests.support.accounts import Account, new_account
from tests.support.stack import OwnStacks, Stack, running_stack


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = redis_server.start(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack"), redis_url) as stack:
        yield stack


@pytest.fixture
def account(redis_url: str) -> Account:
    return new_account(redis_url)


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[OwnStacks]:
    stacks = OwnStacks(tmp_path)
    try:
        yield stacks
    finally:
        for stack in stacks.started:
            stack.stop_all()


@pytest.fixture(autouse=True)
def _show_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for value in getattr(request.node, "funcargs", {}).values():
            for stack in value.started if isinstance(value, OwnStacks) else [value]:
                if isinstance(stack, Stack):
                    print(stack.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
