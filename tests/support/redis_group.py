"""A Redis high-availability group for the tests: a primary, its replicas and the
Sentinels that watch them, all the `redis-server` binary the suite already uses
(Sentinel is that binary in sentinel mode), on free loopback ports in a directory
of the test's own."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import redis

from orchestrator import redis_server
from orchestrator.launch import Process, free_port, wait_until

MASTER = "orch"
# Quick to notice a dead primary, as a test wants; production keeps Sentinel's defaults
# or its own (docs/deployment.md, High availability). Not quicker: on a loaded 2-core
# machine a just-promoted primary can stall for a second, and at 1 s the Sentinels then
# failed over a second time, leaving the new primary without a replica for ten seconds.
DOWN_AFTER_MS = 3000
FAILOVER_TIMEOUT_MS = 5000


@dataclass
class Sentinel:
    process: Process
    port: int

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)

    def stop(self) -> None:
        self.process.stop(grace=5)

    def kill(self) -> None:
        self.process.kill()


@dataclass
class RedisGroup:
    servers: list[redis_server.RedisServer]  # the first started as the primary
    sentinels: list[Sentinel] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def primary_port(self) -> int:
        """The primary as the Sentinels that answer see it."""
        for sentinel in self.sentinels:
            if not sentinel.process.alive():
                continue
            try:
                return int(sentinel.client().sentinel_get_master_addr_by_name(MASTER)[1])
            except redis.ConnectionError:
                continue
        raise AssertionError("no Sentinel answers")

    def server(self, port: int) -> redis_server.RedisServer:
        return next(s for s in self.servers if s.port == port)

    def kill(self, server: redis_server.RedisServer) -> None:
        """SIGKILL, as a host dying would (no shutdown save, no goodbye to replicas)."""
        server.process.kill()

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop()


def start_group(directory: Path, replicas: int = 2, sentinels: int = 3) -> RedisGroup:
    """Returns once every replica is in sync and every Sentinel knows all the others."""
    primary = redis_server.start(directory / "r0")
    servers = [primary]
    for n in range(1, replicas + 1):
        servers.append(
            redis_server.start(
                directory / f"r{n}", extra=("--replicaof", "127.0.0.1", str(primary.port))
            )
        )
    group = RedisGroup(servers)
    try:
        for n in range(sentinels):
            group.sentinels.append(_start_sentinel(directory / f"s{n}", primary.port, quorum=2))
        _wait_settled(group, replicas, sentinels)
    except BaseException:
        group.stop()
        raise
    return group


def _start_sentinel(directory: Path, primary_port: int, quorum: int) -> Sentinel:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = directory / "sentinel.conf"  # Sentinel rewrites it: its own file
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\nlogfile {directory / 'sentinel.log'}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} {quorum}\n"
        f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
        f"sentinel parallel-syncs {MASTER} 1\n"
    )
    # Its own lines go to its logfile; what it prints before reading the config, here.
    args = [redis_server.find_binary(), str(config), "--sentinel"]
    process = Process("sentinel", args, log_path=directory / "sentinel.out").start()
    return Sentinel(process, port)


def _wait_settled(group: RedisGroup, replicas: int, sentinels: int) -> None:
    def settled() -> bool:
        for sentinel in group.sentinels:
            assert sentinel.process.alive(), "a Sentinel exited"
            try:
                state = sentinel.client().sentinel_master(MASTER)
            except redis.ConnectionError:
                return False
            if state["num-slaves"] < replicas or state["num-other-sentinels"] < sentinels - 1:
                return False
        info = redis.Redis(port=group.servers[0].port).info("replication")
        return info["connected_slaves"] == replicas and all(
            info[f"slave{i}"]["state"] == "online" for i in range(replicas)
        )

    wait_until(settled, 30, "the Redis group to settle")
