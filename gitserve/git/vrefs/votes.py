"""VREF/VOTES/N/BRANCH: a push to BRANCH needs N votes, a vote being a branch
refs/heads/votes/<who>/BRANCH pointing at the pushed commit (Gitolite's VOTES: same
arguments, same refusal text)."""

from __future__ import annotations

import fnmatch
import sys

from gitserve.git.vrefs._git import git, not_manual


def main(argv: list[str]) -> int:
    not_manual(argv, 8)
    ref, newsha, refex, needed = argv[0], argv[2], argv[6], argv[7]
    branch = argv[8] if len(argv) > 8 else ""
    if ref != f"refs/heads/{branch}":
        return 0
    pattern = f"refs/heads/votes/*/{branch}"
    votes = 0
    for line in git("for-each-ref", "--format=%(objectname) %(refname)").splitlines():
        sha, _, name = line.partition(" ")
        if fnmatch.fnmatchcase(name, pattern) and newsha in line:
            votes += 1
    try:
        enough = votes >= int(needed)
    except ValueError:
        sys.stderr.write(f"VOTES: '{needed}' is not a number\n")
        return 1
    if not enough:
        print(f"{refex} require at least {needed} votes to push {branch}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
