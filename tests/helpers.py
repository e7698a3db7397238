"""Shared test helpers (import as `from tests.helpers import require_tool`).

In CI (CI=true) a missing tool is a failure, never a skip: the suite must prove the
real thing (git, ssh, sshd, nginx, gitolite3, redis-server) on every run.
"""

from __future__ import annotations

import os
import shutil
import socket

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


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child processes (gitserve, rq worker) that runs THIS checkout's code,
    whichever checkout pip installed in editable mode."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def gitserve_cmd(*args: str) -> list[str]:
    """argv for running the gitserve CLI of this checkout in a child process."""
    import sys

    return [sys.executable, "-m", "gitserve", *args]
