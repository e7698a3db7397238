"""VREF programs: HOME/vrefs/NAME (admin-installed), else the one gitserve ships for Gitolite's
standard VREFs (gitserve/git/vrefs/: FILETYPE, EMAIL-CHECK, VOTES, lock, partial-copy,
refex-expr, NAME_NC), run as Gitolite's update hook runs its VREF helpers.

Arguments: REF OLDSHA NEWSHA OLDTREE NEWTREE AA VREF ARGS... (VREF is the whole
`VREF/NAME/a/b` rule, ARGS its parts after NAME); cwd and GIT_DIR are the repository, whose
pushed objects are in place while its refs have not moved yet; GL_USER, GL_REPO and
GL_REPO_BASE are set. Each stdout line starting with `VREF/` is a virtual ref the rules then
judge (the rest of the line is the message shown when denied); other lines, and stderr,
are shown to the pusher. A non-zero exit rejects the ref.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping

from gitserve.acl.update import VrefProgram
from gitserve.git import vrefs

log = logging.getLogger(__name__)

VREF_DIR = "vrefs"
TIMEOUT = 300.0  # a VREF program that hangs must not hold a push (and its locks) forever


def vref_dir(home: Path) -> Path:
    return home / VREF_DIR


def find(home: Path, name: str) -> Path | None:
    """HOME/vrefs/NAME if it is an executable file, else gitserve's own program for NAME;
    NAME is one path component."""
    if not name or name.startswith(".") or "/" in name or "\0" in name:
        return None
    path = vref_dir(home) / name
    if path.is_file() and os.access(path, os.X_OK):
        return path
    return vrefs.shipped(name)


def _quarantine_env() -> dict[str, str]:
    from gitserve.git import quarantine  # only pushes need it; `gitserve shell info` does not

    return quarantine.active_env()


def _argv(path: Path) -> tuple[list[str], dict[str, str]]:
    """How to start PATH: a shipped program is a module of this gitserve, run by this
    interpreter without site-packages (it needs only the stdlib and git)."""
    shipped_dir = Path(vrefs.__file__).resolve().parent
    if path.parent == shipped_dir:
        package_root = str(shipped_dir.parents[2])
        return ([sys.executable, "-s", "-S", "-m", f"gitserve.git.vrefs.{path.stem}"],
                {"PYTHONPATH": package_root})
    return [str(path)], {}


def runner(home: Path, repo_base: Path, repo: str, repo_path: Path, user: str) -> VrefProgram:
    """The VrefProgram for pushes to REPO by USER."""

    def run(name: str, argv: list[str], extra_env: Mapping[str, str]) -> tuple[int, str, str] | None:
        path = find(home, name)
        if path is None:
            return None
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "GIT_DIR": str(repo_path),
            "GL_USER": user, "GL_REPO": repo, "GL_REPO_BASE": str(repo_base),
            **_quarantine_env(),  # the pushed objects, still quarantined
            **extra_env,  # GL_REFEX_EXPR_* of this ref's check (acl/refexexpr.py)
        }
        prefix, extra = _argv(path)
        env.update(extra)
        try:
            proc = subprocess.run([*prefix, *argv], cwd=repo_path, env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("VREF program %s timed out on %s", name, repo)
            return 9, "", f"VREF/{name}: timed out after {TIMEOUT:.0f} s\n"  # a KILLed $?
        except OSError as exc:
            log.warning("VREF program %s could not run: %s", name, exc)
            return None
        rc = proc.returncode
        status = (-rc) if rc < 0 else rc << 8  # Perl's $?: signal number, or exit << 8
        return (status, proc.stdout.decode("utf-8", "replace"),
                proc.stderr.decode("utf-8", "replace"))

    return run
