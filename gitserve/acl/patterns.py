"""Gitolite 3.6's name patterns (Gitolite::Rc), shared by parser, engine and repo validation.

They decide what is a plain repo name and what is a regex pattern, so every module must
use exactly these: a name that fails REPONAME but passes REPOPATT is a wild-repo pattern.
"""

from __future__ import annotations

import re

REF_OR_FILENAME = re.compile(r"^[0-9a-zA-Z][-0-9a-zA-Z._@/+ :,]*$")
REPONAME = re.compile(r"^@?[0-9a-zA-Z][-0-9a-zA-Z._@/+]*$")
REPOPATT = re.compile(r"^@?[\[0-9a-zA-Z][-0-9a-zA-Z._@/+\\^$|()\[\]*?{},]*$")
USERNAME = re.compile(r"^@?[0-9a-zA-Z][-0-9a-zA-Z._@+]*$")
UNSAFE = re.compile(r"[`~#$&()|;<>]")

# Roles that `perms` may grant on a wild repo (Gitolite's default rc ROLES).
ROLES = ("READERS", "WRITERS")


def _full(pattern: re.Pattern[str], text: str) -> bool:
    # Perl's `$` also matches before a final newline; names never legitimately end in one,
    # so we refuse that case instead of copying the quirk.
    return pattern.match(text) is not None and not text.endswith("\n")


def is_reponame(name: str) -> bool:
    """A plain repo (or group) name: not a pattern."""
    return _full(REPONAME, name)


def is_repopatt(name: str) -> bool:
    return _full(REPOPATT, name)


def is_username(name: str) -> bool:
    return _full(USERNAME, name)


def is_ref_or_filename(name: str) -> bool:
    return _full(REF_OR_FILENAME, name)


def perl_regex(pattern: str) -> re.Pattern[str]:
    """Compile a conf regex the way Perl would read it (raises re.error if it cannot)."""
    return re.compile(pattern)
