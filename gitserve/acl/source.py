"""Where conf files come from: a directory on disk, or the files of conf/ at an admin-repo commit.

`include` globs are resolved against the conf directory (Gitolite chdirs into conf/), so the
parser only needs these few operations; the admin repo can hand its tree over as a mapping
without writing a checkout to disk.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Mapping, Protocol


class ConfSource(Protocol):
    def read(self, name: str) -> str:
        """Text of NAME (relative to the conf directory); raises OSError if unreadable."""

    def is_file(self, name: str) -> bool: ...

    def glob(self, pattern: str) -> list[str]:
        """Names matching PATTERN (one brace-free pattern), sorted like Perl's glob."""

    def identity(self, name: str) -> str:
        """Same value for two names of one file (Gitolite compares device/inode)."""

    def allows(self, name: str) -> bool:
        """May NAME be included (it stays inside the conf directory)?"""


_MAGIC = re.compile(r"[*?\[]")


def expand_braces(pattern: str) -> list[str]:
    """csh-style {a,b} expansion, as Perl's default glob does before matching."""
    depth = 0
    start = -1
    for i, ch in enumerate(pattern):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                inner = pattern[start + 1 : i]
                if inner == "":
                    continue
                parts: list[str] = []
                level = 0
                cur = ""
                for c in inner:
                    if c == "," and level == 0:
                        parts.append(cur)
                        cur = ""
                        continue
                    if c == "{":
                        level += 1
                    elif c == "}":
                        level -= 1
                    cur += c
                parts.append(cur)
                out: list[str] = []
                for part in parts:
                    out.extend(expand_braces(pattern[:start] + part + pattern[i + 1 :]))
                return out
    return [pattern]


def perl_glob(source: ConfSource, pattern: str) -> list[str]:
    """Perl glob semantics: braces, sorted matches, and a magic-free name returned as is."""
    out: list[str] = []
    for one in expand_braces(pattern):
        if _MAGIC.search(one):
            out.extend(source.glob(one))
        else:
            out.append(one)
    return out


def _alphasort(names: list[str]) -> list[str]:
    # GLOB_ALPHASORT: case-insensitive, ties broken by byte order
    return sorted(names, key=lambda n: (n.lower(), n))


class DirSource:
    """Conf files on disk, relative to ROOT (the conf/ directory)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._real_root = os.path.realpath(self.root)

    def allows(self, name: str) -> bool:
        # resolved, so neither "../x.conf", "/etc/x.conf" nor a symlink leads out of conf/
        real = os.path.realpath(self.root / name)
        return real == self._real_root or real.startswith(self._real_root + os.sep)

    def _path(self, name: str) -> Path:
        return self.root / name

    def read(self, name: str) -> str:
        return self._path(name).read_bytes().decode("utf-8", errors="surrogateescape")

    def is_file(self, name: str) -> bool:
        return self._path(name).is_file()

    def glob(self, pattern: str) -> list[str]:
        import glob as globmod

        return _alphasort(globmod.glob(pattern, root_dir=self.root))

    def identity(self, name: str) -> str:
        try:
            st = os.stat(self._path(name))
        except OSError:
            return "missing:" + name
        return f"{st.st_dev}/{st.st_ino}"


class MappingSource:
    """Conf files given as {relative name: text}, e.g. the conf/ tree of an admin-repo commit."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = {os.path.normpath(k): v for k, v in files.items()}

    def read(self, name: str) -> str:
        key = os.path.normpath(name)
        if key not in self.files:
            raise FileNotFoundError(name)
        return self.files[key]

    def is_file(self, name: str) -> bool:
        return os.path.normpath(name) in self.files

    def glob(self, pattern: str) -> list[str]:
        pat = os.path.normpath(pattern)
        depth = pat.count("/")
        hits = [
            k for k in self.files
            if k.count("/") == depth and not any(p.startswith(".") and not q.startswith(".")
                                                 for p, q in zip(k.split("/"), pat.split("/")))
            and fnmatch.fnmatchcase(k, pat)
        ]
        return _alphasort(hits)

    def identity(self, name: str) -> str:
        return os.path.normpath(name)

    def allows(self, name: str) -> bool:
        norm = os.path.normpath(name)
        return not (norm.startswith("/") or norm == ".." or norm.startswith("../"))
