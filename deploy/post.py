"""Run `deploy.post` (e.g. a search-index upload) from the pushed commit after a switch.

The script comes from a push, so it runs in the same sandbox as a build (gitserve.sandbox):
never as root, its own PID namespace (killed and reaped when it ends or times out), the
server home, ~/.ssh and every other workspace invisible, and an environment made of
LIVE_SIDE, IDLE_SIDE, SITE and the repo's secrets only (plus PATH, HOME, LANG).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Callable, Mapping

from gitserve import sandbox

from .errors import DeployError

POST_TIMEOUT = 600.0


def _work_for(workdir: Path, settings_home: Path | None) -> tuple[Path, Path | None]:
    """WORKDIR's sandbox layout (WORK/src, home, tmp) as the deploy job makes it; for any
    other checkout a fresh work directory is made (returned second, to remove after)."""
    if workdir.name == "src" and (workdir.parent / "home").is_dir() and (workdir.parent / "tmp").is_dir():
        return workdir.parent, None
    root = sandbox.work_root((settings_home or Path("~/.cache/gitserve")) / "work")
    work = sandbox.new_workdir(root)
    return work, work


def run_post(workdir: Path, script: str, env: Mapping[str, str], say: Callable[[str], None],
             timeout: float = POST_TIMEOUT, policy: sandbox.Policy | None = None,
             settings_home: Path | None = None, hide: list[Path] | None = None,
             reach: tuple[int, ...] = ()) -> int:
    """Run SCRIPT of the checkout WORKDIR in the sandbox, each output line to SAY; returns
    its exit status. Raises DeployError on a timeout or when no sandbox may be used."""
    policy = policy or sandbox.Policy()
    root = workdir.resolve()
    path = (workdir / script).resolve()
    if root not in path.parents or not path.is_file():
        raise DeployError("post", f"deploy.post {script} is not a file in the pushed commit")
    work, scratch = _work_for(root, settings_home)
    try:
        inside = str(sandbox.INSIDE_SRC / path.relative_to(root))
        argv = [inside] if os.access(path, os.X_OK) else ["/bin/sh", inside]
        try:
            if scratch is not None:
                sandbox.hand_over(policy, scratch)
            hidden = list(hide or []) + ([settings_home] if settings_home is not None else [])
            jail = sandbox.prepare(policy, work, argv, dict(env), hide=hidden, src=root,
                                   reach=reach if policy.network in ("", "outbound") else ())
        except sandbox.SandboxError as exc:
            raise DeployError("post", f"deploy.post not run: {exc}") from None
        return _run(jail, script, say, timeout)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _run(jail: sandbox.Run, script: str, say: Callable[[str], None], timeout: float) -> int:
    try:
        proc = subprocess.Popen(jail.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                **jail.popen_kwargs())
    except BaseException:
        jail.close()
        raise
    jail.started()
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        jail.kill()
        _kill_group(proc.pid)

    timer = threading.Timer(timeout, expire)
    timer.start()
    oom = 0
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            say(raw.decode(errors="replace").rstrip("\r\n"))
        rc = proc.wait()
    finally:
        timer.cancel()
        jail.reap()
        oom = jail.cgroup.oom_kills() if jail.cgroup is not None else 0
        jail.close()
        _kill_group(proc.pid)
    if oom and jail.limits is not None:  # killed at its memory cgroup's ceiling, not a timeout
        raise DeployError("post", f"deploy.post {script} killed: memory limit "
                                  f"{jail.limits.show('memory')} reached")
    if timed_out.is_set() or (rc < 0 and -rc == signal.SIGKILL):
        raise DeployError("post", f"deploy.post {script} timed out after {timeout:.0f}s")
    return rc


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
