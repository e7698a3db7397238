"""Commit objects the admin repo's writers make (admin commands, init, the branch move)."""

from __future__ import annotations

import re
import time

from dulwich.objects import Commit

FILE_MODE = 0o100644


def who(author: str) -> str:
    """The name part of "Name <email>" (what the audit log and commit messages show)."""
    return author.split(" <", 1)[0]


def _identity(author: str) -> bytes:
    author = " ".join(author.split()) or "unknown"
    if re.fullmatch(r".+ <[^<>]*>", author):
        return author.encode()
    return f"{author.replace('<', '').replace('>', '')} <>".encode()


def make_commit(tree_id: bytes, parents: list[bytes], message: str, author: str) -> Commit:
    """A commit by AUTHOR, committed by `gitserve`, dated now in the local timezone."""
    now = int(time.time())
    offset = -time.timezone if time.localtime(now).tm_isdst == 0 else -time.altzone
    c = Commit()
    c.tree = tree_id
    c.parents = parents
    c.author = _identity(author)
    c.committer = b"gitserve <>"
    c.author_time = c.commit_time = now
    c.author_timezone = c.commit_timezone = offset
    c.encoding = b"UTF-8"
    c.message = (message.rstrip("\n") + "\n").encode()
    return c
