"""VREF/lock: refuse a push that changes a file another user locked (Gitolite's `lock`
command keeps the locks in the repo's gl-locks file, a Data::Dumper hash; a site moved over
keeps it). Output is Gitolite's: the VREF, then "'FILE' locked by 'USER'", no newline."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from gitserve.git.vrefs._git import git

# Data::Dumper's `%locks = ( 'file' => { 'TIME' => 1, 'USER' => 'u1' }, ... );`
ENTRY = re.compile(r"'((?:[^'\\]|\\.)*)'\s*=>\s*\{(.*?)\}", re.S)
USER = re.compile(r"'USER'\s*=>\s*'((?:[^'\\]|\\.)*)'")


def _unquote(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


def read_locks(text: str) -> dict[str, str]:
    locks = {}
    for m in ENTRY.finditer(text):
        user = USER.search(m.group(2))
        if user:
            locks[_unquote(m.group(1))] = _unquote(user.group(1))
    return locks


def main(argv: list[str]) -> int:
    if len(argv) < 7 or not argv[6]:
        sys.stderr.write("not meant to be run manually\n")
        return 255
    base, repo = os.environ.get("GL_REPO_BASE", ""), os.environ.get("GL_REPO", "")
    ff = Path(base) / f"{repo}.git" / "gl-locks"
    if not ff.is_file():
        return 0
    locks = read_locks(ff.read_text(errors="replace"))
    oldtree, newtree, refex = argv[3], argv[4], argv[6]
    user = os.environ.get("GL_USER", "")
    for name in git("diff", "--name-only", oldtree, newtree).splitlines():
        if name in locks and locks[name] != user:
            sys.stdout.write(f"{refex} '{name}' locked by '{locks[name]}'")
            break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
