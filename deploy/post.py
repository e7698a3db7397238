"""Run `deploy.post` (e.g. a search-index upload) from the pushed commit after a switch."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Callable, Mapping

from .errors import DeployError

POST_TIMEOUT = 600.0


def run_post(workdir: Path, script: str, env: Mapping[str, str], say: Callable[[str], None],
             timeout: float = POST_TIMEOUT) -> int:
    """Run SCRIPT in WORKDIR, each output line to SAY; returns its exit status.
    It runs in its own process group so a timeout kills everything it started."""
    root = workdir.resolve()
    path = (workdir / script).resolve()
    if root not in path.parents or not path.is_file():
        raise DeployError("post", f"deploy.post {script} is not a file in the pushed commit")
    argv = [str(path)] if os.access(path, os.X_OK) else ["/bin/sh", str(path)]
    full_env = dict(os.environ)
    full_env.update(env)
    proc = subprocess.Popen(argv, cwd=root, env=full_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    timer = threading.Timer(timeout, lambda: _kill_group(proc.pid))
    timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            say(raw.decode(errors="replace").rstrip("\r\n"))
        rc = proc.wait()
    finally:
        timer.cancel()
    if rc < 0 and -rc == signal.SIGKILL:
        raise DeployError("post", f"deploy.post {script} timed out after {timeout:.0f}s")
    return rc


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
