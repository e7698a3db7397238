"""A git work tree driven by the real git with fixed identities and dates, so histories made
in tests are reproducible (same shas every run)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def git(cwd: Path, *args: str, env: dict | None = None) -> str:
    e = dict(os.environ, GIT_AUTHOR_NAME="T", GIT_AUTHOR_EMAIL="t@example.com",
             GIT_COMMITTER_NAME="T", GIT_COMMITTER_EMAIL="t@example.com",
             GIT_AUTHOR_DATE="2020-01-01T00:00:00Z", GIT_COMMITTER_DATE="2020-01-01T00:00:00Z",
             GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_SYSTEM="/dev/null")
    e.update(env or {})
    return subprocess.run(["git", *args], cwd=cwd, env=e, check=True, capture_output=True,
                          text=True, timeout=30).stdout.strip()


def commit(work: Path, files: dict[str, bytes], msg: str) -> str:
    for name, data in files.items():
        p = work / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", msg)
    return git(work, "rev-parse", "HEAD")
