"""Shared test helpers (import as `from tests.support.tools import require_tool`).

In CI (CI=true) a missing tool is a failure, never a skip: the suite must prove the
real thing (git, ssh, sshd, nginx, gitolite3, redis-server) on every run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_EXTRA_PATHS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def find_tool(name: str) -> str | None:
    path = shutil.which(name)
    if path:
        return path
    for d in _EXTRA_PATHS:
        candidate = os.path.join(d, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require_tool(name: str) -> str:
    """Path of NAME; skip the test locally if absent, fail it in CI."""
    path = find_tool(name)
    if path is None:
        msg = f"required tool {name!r} is not installed"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child processes (gitserve, rq worker) that runs THIS checkout's code,
    whichever checkout pip installed in editable mode."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def gitserve_in_process(*args: str, env: dict[str, str | None] | None = None,
                        ) -> subprocess.CompletedProcess:
    """`gitserve ARGS...` run by this process: the CLI's own main() (typer, one-line errors,
    exit status) with stdout/stderr captured and ENV applied (None unsets a variable), as a
    CompletedProcess. For tests that ask the CLI hundreds of questions, where a Python start
    per question is most of the time; they keep one real child process to compare with."""
    import io
    import sys
    from contextlib import redirect_stderr, redirect_stdout

    from gitserve.cli import main

    saved = {k: os.environ.get(k) for k in (env or {})}
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    try:
        for k, v in (env or {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        sys.argv = ["gitserve", *args]
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(["gitserve", *args], code, out.getvalue(), err.getvalue())


def gitserve_cmd(*args: str) -> list[str]:
    """argv for running the gitserve CLI of this checkout in a child process."""
    import sys

    return [sys.executable, "-m", "gitserve", *args]


class HttpLoad:
    """THREADS clients doing GETs on http://HOST:PORT/PATH (a new connection each, as most
    visitors arrive) until stopped; records (start, end, status, body) per request, or the
    error, so a test can prove zero failed requests and whole responses during a deploy."""

    def __init__(self, port: int, path: str = "/", threads: int = 8, host: str = "127.0.0.1") -> None:
        import threading

        self.host, self.port, self.path = host, port, path
        self.results: list[tuple[float, float, int, bytes]] = []
        self.errors: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        import http.client
        import time

        while not self._stop.is_set():
            t0 = time.monotonic()
            conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read()
                with self._lock:
                    self.results.append((t0, time.monotonic(), resp.status, body))
            except Exception as exc:  # every kind of failure counts as a failed request
                with self._lock:
                    self.errors.append((t0, f"{type(exc).__name__}: {exc}"))
            finally:
                conn.close()

    def __enter__(self) -> "HttpLoad":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def failures(self, ok: tuple[int, ...] = (200,)) -> list[str]:
        """Every request that failed, as one line each with its time, and for an answer
        its status and the start of its body (an nginx error page says which): what a
        zero-failed-requests assertion prints."""
        with self._lock:
            bad = [(t0, f"{status} {body[:300]!r} after {t1 - t0:.2f}s")
                   for t0, t1, status, body in self.results if status not in ok]
            bad += list(self.errors)
        return [f"t={t0:.3f} {what}" for t0, what in sorted(bad)]
