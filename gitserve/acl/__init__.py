"""gitserve's access engine: Gitolite 3.6's conf language and decisions, as a library.

    rules = acl.load(Path("conf/gitolite.conf"))          # ConfError: "conf/x.conf:12: msg"
    rules.check(repo, user, "R")                          # check #1 (ref "any")
    rules.check_update(repo, user, ref, old, new, inspector)   # check #2, VREFs included

Pure Python with no I/O beyond reading conf files (and gl-creator/gl-perms in `wild`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from . import patterns
from .can import can, repo_exists
from .engine import Rules, WildInfo
from .errors import AccessError, ConfError
from .parser import compile_file, compile_source
from .source import ConfSource, DirSource, MappingSource
from .types import Decision, Inspector, RepoContext, RuleBook
from .update import ZERO_SHA

__all__ = [
    "AccessError", "ConfError", "can", "repo_exists", "ConfSource", "Decision", "DirSource", "Inspector",
    "MappingSource", "RepoContext", "RuleBook", "Rules", "WildInfo", "ZERO_SHA", "load", "load_files", "load_source",
    "patterns",
]


def load(path: Path | str, refex_expr: bool = False) -> Rules:
    """Compile the conf at PATH (includes resolved beside it). Raises ConfError.
    REFEX_EXPR: Gitolite's refex expressions are on (`[server] refex_expr`)."""
    return Rules(compile_file(Path(path), refex_expr))


def load_source(source: ConfSource, main: str = "gitolite.conf", label: str = "conf/",
                refex_expr: bool = False) -> Rules:
    return Rules(compile_source(source, main, label, refex_expr))


def load_files(files: Mapping[str, str], main: str = "gitolite.conf",
               refex_expr: bool = False) -> Rules:
    """Compile conf files given as {name relative to conf/: text}, e.g. from an admin-repo
    commit, without touching the disk. Raises ConfError."""
    return load_source(MappingSource(files), main, refex_expr=refex_expr)
