"""Check #1: may the user read (R) or write (W) the repository at all, before any git
protocol starts (Gitolite's access check in gitolite-shell), with the wild-repo creation a
user with `C` gets on first use."""

from __future__ import annotations

from typing import Callable

from gitserve import adminrepo, audit, repoconf, repos
from gitserve.acl import WildInfo
from gitserve.acl.errors import AccessError
from gitserve.adminrepo import AdminState
from gitserve.settings import Settings

# Gitolite's hint after a check #1 denial (it cannot tell a typo from a forbidden repo)
MISSPELLED = "(or you mis-spelled the reponame)"


class Denied(AccessError):
    """Check #1 failed: str() is the text after `FATAL: ` (Gitolite's message)."""


def authorize(settings: Settings, state: AdminState, user: str, ip: str, name: str, aa: str,
              *, notice: Callable[[str], None], may_create: bool = True) -> WildInfo | None:
    """Check #1 for USER (from IP) with access AA (R or W) on repo NAME, creating it first
    when it is a wild repo USER may create (NOTICE gets git's `Initialized ...` line) and
    MAY_CREATE; returns the repo's WildInfo (None for a plain repo). Raises Denied."""
    rules = state.rules
    if user == adminrepo.BUILDER:
        if aa != "R" or not repos.exists(settings, name):
            raise Denied(f"{aa} any {name} {user} DENIED by fallthru\n{MISSPELLED}")
        return None
    exists = repos.exists(settings, name)
    if not exists and not may_create:
        # e.g. an anonymous HTTP request never creates a wild repo, whatever `C` says
        raise Denied(f"{aa} any {name} {user} DENIED by fallthru")
    if not exists and rules.can_create(name, user):
        try:
            repos.create(settings, name, creator=user)
            notice(repos.initialized_line(settings, name))
            repoconf.apply_one(settings, rules, name)
            audit.record(settings, user=user, ip=ip, repo=name, op="C", result="created")
        except repos.RepoError:
            pass  # a racing creator won; the rules below decide for this user
        exists = repos.exists(settings, name)
    wild = repos.wild_info(settings, name) if exists else None
    decision = rules.check(name, user, aa, "any", wild=wild, exists=exists)
    audit.record(settings, user=user, ip=ip, repo=name, op=aa,
                 result="allowed" if decision.allowed else "denied",
                 reason=None if decision.allowed else decision.message)
    if not decision.allowed:
        raise Denied(f"{decision.message}\n{MISSPELLED}")
    if aa != "R":
        down = repos.down_message(settings, name)  # `writable ... off`
        if down is not None:
            raise Denied(down.rstrip("\n"))
    if not exists:
        if name in rules.repo_names():
            try:
                repos.create(settings, name)  # named in the conf but not compiled yet
            except repos.RepoError:
                pass
        if not repos.exists(settings, name):
            # allowed by a pattern nobody may create from: nothing to serve
            raise Denied(f"{aa} any {name} {user} DENIED by fallthru\n{MISSPELLED}")
    return wild
