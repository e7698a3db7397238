"""Gitolite's standard VREF programs, written for gitserve: same arguments, same output.

Each module here is a standalone script (stdlib and the `git` command only, never gitserve:
it runs in its own interpreter, started with `-I -S` for speed) that gitserve/git/vrefprog.py
runs exactly as Gitolite's update hook runs `VREF/NAME`: argv REF OLDSHA NEWSHA OLDTREE
NEWTREE AA VREF ARGS..., cwd and GIT_DIR the repository, GL_USER/GL_REPO/GL_REPO_BASE set.
A program of the same name in HOME/vrefs/ wins (as LOCAL_CODE wins in Gitolite).
COUNT, MAX_NEWBIN_SIZE, MERGE-CHECK and NAME are built into gitserve/acl/update.py instead.
"""

from __future__ import annotations

from pathlib import Path

# VREF name -> script in this directory
SHIPPED = {
    "FILETYPE": "filetype.py",
    "EMAIL-CHECK": "email_check.py",
    "VOTES": "votes.py",
    "lock": "lock.py",
    "partial-copy": "partial_copy.py",
    "refex-expr": "refex_expr.py",
    "NAME_NC": "name_nc.py",
}


def shipped(name: str) -> Path | None:
    """The script for VREF NAME, or None."""
    script = SHIPPED.get(name)
    return Path(__file__).resolve().parent / script if script else None
