"""What the shipped VREF programs share: git in the repository, the files of new commits."""

from __future__ import annotations

import subprocess
import sys


def git(*args: str) -> str:
    """`git ARGS` in the repository (cwd); its stdout. A failure ends the program with git's
    message and status, as a shell VREF's failing pipeline would reject the push."""
    proc = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        sys.exit(proc.returncode)
    return proc.stdout


def new_commits_files(new: str) -> list[str]:
    """Files touched by the commits this push brings (`git log --name-only NEW --not --all`),
    sorted and unique, as Gitolite's FILETYPE and NAME_NC list them."""
    out = git("log", "--name-only", "--format=%n", new, "--not", "--all")
    return sorted({line for line in out.splitlines() if line.strip()})


def not_manual(argv: list[str], needed: int) -> None:
    """Gitolite's guard: these programs are called by the update hook only."""
    if len(argv) < needed or not argv[needed - 1]:
        sys.stderr.write("not meant to be run manually\n")
        sys.exit(1)
