"""Gitolite's mirroring before git runs (its Mirroring trigger's pre_git), for a git request:
a server key's access (reads of repos mirrored here, the master's pushes), and the gate a
user's request passes on a mirrored repo (refused, or forwarded to the master). The
decisions and messages are gitserve/mirror/gate.py's."""

from __future__ import annotations

from typing import Callable

from gitserve import repos
from gitserve.acl import WildInfo
from gitserve.adminrepo import AdminState
from gitserve.mirror import gate as mirror_gate
from gitserve.mirror import peercmds as mirror_peer
from gitserve.mirror import promotion as mirror_promotion
from gitserve.mirror import state as mirror_state
from gitserve.mirror.config import COPY, ELSEWHERE, repo_mirror
from gitserve.settings import Settings

from .access import MISSPELLED, Denied


def user_gate(settings: Settings, state: AdminState, name: str, aa: str,
              notice: Callable[[str], None]) -> str | None:
    """Gitolite's mirroring pre_git for a user: refuse (Denied), or name the master to forward
    to. On a master with failed mirror pushes, their status goes to NOTICE (as Gitolite's)."""
    hostname = settings.server.hostname
    mirror = repo_mirror(state.rules.options(name, wild=repos.wild_info(settings, name)))
    try:
        verdict = mirror_gate.check_user(hostname, name, mirror, aa)
    except mirror_gate.Refused as exc:
        raise Denied(str(exc)) from None
    if verdict.redirect_to is None and mirror.mode(hostname) != "local":
        repo_dir = repos.path(settings, name)
        for slave in mirror_state.failed_slaves(repo_dir):
            text = mirror_state.status_text(name, repo_dir, slave)
            if text:  # NOTICE ends each line itself
                notice(text.rstrip("\n"))
    return verdict.redirect_to


def peer_access(settings: Settings, state: AdminState, peer_user: str, sender: str, name: str,
                aa: str) -> WildInfo | None:
    """A server key (SENDER, connected as PEER_USER): reads of any repo mirrored here (promote
    fetches), and the master's pushes (case 2: no access rules; it carries what the master
    allowed)."""
    hostname = settings.server.hostname
    exists = repos.exists(settings, name)
    mirror = repo_mirror(state.rules.options(
        name, wild=repos.wild_info(settings, name) if exists else None))
    if aa == "R":  # only the servers that mirror this repo (promote fetches from them)
        if mirror.mode(hostname) == ELSEWHERE or not exists \
                or sender not in (mirror.master, *mirror.copies):
            raise Denied(f"R any {name} {peer_user} DENIED by fallthru\n{MISSPELLED}")
        return repos.wild_info(settings, name)
    try:
        mirror_gate.check_master_push(hostname, name, mirror, sender)
    except mirror_gate.Refused as exc:
        # a slave promoted to master pushes the admin repo that says so (checked per ref)
        if not mirror_promotion.may_announce(hostname, name, mirror, sender):
            raise Denied(str(exc)) from None
    try:
        mirror_peer.ensure_repo(settings, name)
    except repos.RepoError as exc:
        raise Denied(str(exc)) from None
    return repos.wild_info(settings, name)


def missing_copy(settings: Settings, state: AdminState, name: str, user: str,
                 aa: str) -> str | None:
    """A wild repo USER may create, missing here, on a host that only holds copies of it: it
    is never created here (nothing would mirror it, the master would never know it; Gitolite
    creates it on the copy and leaves it stray there). A push redirectOK allows goes to the
    master, which creates it and mirrors it back: its name is returned. Anything else is
    refused as `create` on a slave is. None when NAME is not such a repo (check #1 decides)."""
    hostname = settings.server.hostname
    if not hostname or repos.exists(settings, name) or not state.rules.can_create(name, user):
        return None
    mirror = repo_mirror(state.rules.options(name))
    mode = mirror.mode(hostname)
    if mode == ELSEWHERE:
        raise Denied(f"{hostname}: '{name}' is mirrored but not here")
    if mode != COPY:
        return None
    if aa != "R" and mirror.trusts(hostname):
        return mirror.master
    raise Denied(f"{hostname}: '{name}' is a copy; create it on its master '{mirror.master}'")
