"""Hide the server home from a build script run by a worker on the server host.

A local worker runs as the server's user: without this, a script could read
HOME/secrets.key, HOME/worker_key and every repository. Between fork and exec (preexec_fn)
the child enters a new user + mount namespace (its uid maps to itself: no privilege is
gained), mounts an empty tmpfs over each hidden directory, binds its workspace (and,
read-only, the object store its checkout borrows) back when they live inside one, then
enters a second user + mount namespace, which locks those mounts: not even a script that
believes it is root can unmount them. Nothing else changes: same uid, env, /usr, network,
process group (so timeout and cancel still kill everything).

Only a worker that knows the server home ($GITSERVE_HOME: local workers) hides anything;
on a build host the HOME is not the server's.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path

from gitserve.errors import GitserveError

from .workersettings import WorkerSettings

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

try:  # loaded here, never between fork and exec
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


class SandboxError(GitserveError, OSError):
    pass


@dataclass
class Plan:
    hide_dirs: list[str] = field(default_factory=list)   # tmpfs over each
    hide_files: list[str] = field(default_factory=list)  # /dev/null over each
    keep: list[str] = field(default_factory=list)        # bound back read-write
    keep_ro: list[str] = field(default_factory=list)     # bound back read-only

    def __bool__(self) -> bool:
        return bool(self.hide_dirs or self.hide_files)


def plan_for(workspace: Path) -> Plan:
    """What to hide for a build in WORKSPACE, from this worker's environment."""
    plan = Plan()
    ws_conf = WorkerSettings.from_env()
    if ws_conf.home is not None and ws_conf.home.is_dir():
        plan.hide_dirs.append(str(ws_conf.home.resolve()))
    for key in (ws_conf.secrets_key, ws_conf.worker_key):
        if key is not None and key.is_file():
            plan.hide_files.append(str(key.resolve()))
    if not plan:
        return plan
    ws = workspace.resolve()
    plan.keep.append(str(ws))
    alternates = ws / ".git" / "objects" / "info" / "alternates"
    try:
        for line in alternates.read_text().splitlines():
            if line.strip() and Path(line.strip()).is_dir():
                plan.keep_ro.append(str(Path(line.strip()).resolve()))
    except OSError:
        pass
    return plan


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise SandboxError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    assert _LIBC is not None
    _check(_LIBC.mount(src.encode() if src else None, target.encode(),
                       fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                       data.encode() if data else None), f"mount {target}")


def _enter_userns(uid: int, gid: int) -> None:
    assert _LIBC is not None
    _check(_LIBC.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def apply(plan: Plan, cwd: str) -> None:
    """In the child, between fork and exec. Raises SandboxError (OSError) on failure."""
    if _LIBC is None:
        raise SandboxError(0, "no libc")
    uid, gid = os.getuid(), os.getgid()
    _enter_userns(uid, gid)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # paths kept visible are opened (in the new namespace) before they are covered, then
    # bound back from the fd
    kept = [(p, os.open(p, os.O_PATH | os.O_DIRECTORY), False) for p in plan.keep]
    kept += [(p, os.open(p, os.O_PATH | os.O_DIRECTORY), True) for p in plan.keep_ro]
    for d in plan.hide_dirs:
        _mount("gitserve-sandbox", d, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=1m")
    for f in plan.hide_files:
        _mount("/dev/null", f, None, MS_BIND)
    for path, fd, ro in kept:
        if any(path == d or path.startswith(d.rstrip("/") + "/") for d in plan.hide_dirs):
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            if ro:
                _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(fd)
    # a second user namespace: the mounts above are locked in it (cannot be undone)
    _enter_userns(uid, gid)
    os.chdir(cwd)  # the old cwd may be a directory under a now hidden path

