"""VREF/NAME_NC/...: like VREF/NAME but only for files in new commits (Gitolite's NAME_NC):
prints VREF/NAME_NC/<path> for each file the pushed commits touch."""

from __future__ import annotations

import sys

from gitserve.git.vrefs._git import new_commits_files

ZERO = "0" * 40


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        sys.stderr.write("not meant to be run manually\n")
        return 1
    if argv[2] == ZERO:
        sys.stderr.write("we don't currently handle deletions\n")
        return 1
    for name in new_commits_files(argv[2]):
        print(f"VREF/NAME_NC/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
