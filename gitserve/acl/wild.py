"""Wild-repo metadata as Gitolite keeps it inside the bare repo: `gl-creator` and `gl-perms`.

Keeping Gitolite's files (not a database) means a Gitolite `repositories/` directory moves
over unchanged, and `gitolite` itself could read ours.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import patterns as P
from .engine import WildInfo
from ..fsutil import atomic_write

CREATOR_FILE = "gl-creator"
PERMS_FILE = "gl-perms"


def parse_perms(text: str) -> dict[str, list[str]]:
    """gl-perms lines ("READERS u1 @g", "WRITERS = u2") normalised as Gitolite reads them."""
    roles: dict[str, list[str]] = {}
    for line in text.split("\n"):
        line = re.sub(r"^\s+", "", line)
        line = re.sub(r" +$", "", line)
        line = line.replace("=", " ", 1)
        line = re.sub(r"\s+", " ", line)
        line = line[1:] if line.startswith("@") else line
        if line.startswith("#") or not line.strip():
            continue
        role, *members = line.split()
        roles.setdefault(role, []).extend(members)
    return roles


def render_perms(roles: dict[str, list[str]]) -> str:
    """gl-perms text for ROLES, one "ROLE member..." line per role, as `perms` writes it."""
    return "".join(f"{role} {' '.join(members)}\n" for role, members in roles.items() if members)


def validate_roles(roles: dict[str, list[str]]) -> None:
    """Refuse what Gitolite's `perms` refuses: unknown roles, bad member names."""
    for role, members in roles.items():
        if role not in P.ROLES:
            raise ValueError(f"Invalid role '{role}'; try 'perms -lr'.")
        for m in members:
            if not P.is_username(m):
                raise ValueError(f"invalid user '{m}'")


def read_wild(repo_dir: Path) -> WildInfo | None:
    """WildInfo of the bare repo at REPO_DIR, or None if it has no gl-creator (not wild)."""
    repo_dir = Path(repo_dir)
    try:
        creator = (repo_dir / CREATOR_FILE).read_text().rstrip("\n")
    except FileNotFoundError:
        return None
    try:
        roles = parse_perms((repo_dir / PERMS_FILE).read_text())
    except FileNotFoundError:
        roles = {}
    return WildInfo(creator=creator, roles=roles)




def write_creator(repo_dir: Path, creator: str) -> None:
    if not P.is_username(creator):
        raise ValueError(f"invalid user '{creator}'")
    atomic_write(Path(repo_dir) / CREATOR_FILE, creator + "\n")


def write_perms(repo_dir: Path, roles: dict[str, list[str]]) -> None:
    """Replace gl-perms atomically (validated first: nothing is written on bad input)."""
    validate_roles(roles)
    atomic_write(Path(repo_dir) / PERMS_FILE, render_perms(roles))


def write_wild(repo_dir: Path, info: WildInfo) -> None:
    write_creator(repo_dir, info.creator)
    write_perms(repo_dir, info.roles)
