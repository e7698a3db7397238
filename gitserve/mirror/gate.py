"""Gitolite's mirroring decisions before git runs (its Mirroring trigger's pre_git), with
its messages word for word: users and scripts of a Gitolite mirror match on them.

Three kinds of push reach a server (Gitolite's case 1-3):
1. a user pushes: fine on the master (or an unmirrored repo); on a slave it is forwarded to
   the master when redirectOK names this slave, else refused;
2. the master pushes its state to this slave (peer `server-MASTER`, no access rules: it
   carries what the master already allowed);
3. a slave forwards a user's push (`USER=u SOC=git-receive-pack 'repo'` from
   `server-SLAVE`): the master takes it as that user, with every rule applied as user u.
A repo whose options name master and slaves but not this host is "mirrored but not here"
for reads and writes alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gitserve.acl.errors import AccessError

from .config import COPY, ELSEWHERE, LOCAL, MASTER, RepoMirror, server_name

# a slave's forwarded push, exactly as Gitolite's slave sends it to the master
REDIRECT_RE = re.compile(r"^USER=(\S+) SOC=(git-receive-pack '(\S+)')$")
# the same for a user's LFS upload to a slave (gitserve: Gitolite has no LFS), so the objects
# land where the pushes do and are mirrored from there
LFS_REDIRECT_RE = re.compile(r"^USER=(\S+) SOC=git-lfs-transfer '(\S+)' upload$")
# the master carrying a wild repo's creator and roles (Gitolite's peer command)
CREATOR_PERMS_RE = re.compile(r"^CREATOR=(\S+) perms -c '(\S+)'$")


class Refused(AccessError):
    """The text after `FATAL: ` (Gitolite's _die); an AccessError, so each transport's one
    GitserveError catch words it as any refusal."""


@dataclass(frozen=True)
class Verdict:
    redirect_to: str | None = None  # forward this push to that master


# Gitolite's words for a repo a server sends here that this host does not mirror at all
_NOT_MIRRORED_HERE = {ELSEWHERE: "is mirrored but not here", LOCAL: "is local"}


def _refuse_mode(hostname: str, repo: str, mirror: RepoMirror, wrong: dict[str, str]) -> None:
    """Refused with WRONG's words when REPO's mode on this host is one of WRONG's keys."""
    why = wrong.get(mirror.mode(hostname))
    if why is not None:
        raise Refused(f"{hostname}: '{repo}' {why}")


def check_master_push(hostname: str, repo: str, mirror: RepoMirror, sender: str) -> None:
    """Case 2: SENDER pushes (or sends perms/meta) to this slave."""
    _refuse_mode(hostname, repo, mirror, {**_NOT_MIRRORED_HERE, MASTER: "is native"})
    if mirror.master != sender:
        raise Refused(f"{hostname}: '{sender}' is not the master for '{repo}'")


def check_redirected(hostname: str, repo: str, mirror: RepoMirror, sender: str) -> None:
    """Case 3: slave SENDER forwards a user's push to this master."""
    _refuse_mode(hostname, repo, mirror, {**_NOT_MIRRORED_HERE, COPY: "is not native"})
    if sender not in mirror.copies:
        raise Refused(f"{hostname}: '{sender}' is not a valid copy for '{repo}'")
    if not mirror.trusts(sender):
        raise Refused(f"{hostname}: redirection not allowed from '{sender}'")


def check_user(hostname: str, repo: str, mirror: RepoMirror, aa: str) -> Verdict:
    """Case 1 (and every read): a user's git command on this host."""
    mode = mirror.mode(hostname)
    if mode == ELSEWHERE:
        raise Refused(f"{hostname}: '{repo}' is mirrored but not here")
    if aa == "R" or mode in (LOCAL, MASTER):
        return Verdict()
    if mirror.trusts(hostname):
        return Verdict(redirect_to=mirror.master)
    raise Refused(f"{hostname}: pushing '{repo}' to copy '{hostname}' not allowed")


def changed_repo(command: str, args: list[str]) -> str | None:
    """The repo an ssh command would change (create, roles, description, HEAD, delete,
    writable), or None when it only reads. On a slave these are refused (check_local_change):
    the master's next mirror push would silently undo them."""
    plain = [a for a in args if a != "-c"]
    if command == "perms":
        if args[:1] == ["-c"] and len(args) >= 2:
            return args[1]  # may create, and roles come from stdin or the arguments
        if len(plain) >= 2 and plain[1] in ("+", "-"):
            return plain[0]
        return None
    if command == "desc":
        return args[0] if len(args) >= 2 else None
    if command == "symbolic-ref":
        return args[0] if len(args) >= 3 else None
    if command == "D":
        return args[1] if len(args) >= 2 else None
    if command == "create":
        return args[0] if args else None
    if command == "fork":
        return args[1] if len(args) >= 2 else None
    if command == "writable":
        return args[0] if len(args) >= 2 and args[0] != "@all" and args[1] in ("on", "off") \
            else None
    return None


def check_local_change(hostname: str, repo: str, mirror: RepoMirror) -> None:
    """Refuse a change made on a slave (or on a host a repo is not mirrored to)."""
    mode = mirror.mode(hostname)
    if mode == ELSEWHERE:
        raise Refused(f"{hostname}: '{repo}' is mirrored but not here")
    if mode == COPY:
        raise Refused(f"{hostname}: '{repo}' is a copy; change it on its master "
                      f"'{mirror.master}'")


def not_a_server(user: str) -> str:
    """What Gitolite says when a user (not a server key) sends a slave's redirect line."""
    return f"'{user}' is not a valid server name"


__all__ = ["REDIRECT_RE", "LFS_REDIRECT_RE", "CREATOR_PERMS_RE", "Refused", "Verdict", "check_master_push",
           "check_redirected", "check_user", "not_a_server", "server_name", "changed_repo",
           "check_local_change"]
