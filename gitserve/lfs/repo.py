"""Where one repository's LFS data lives: HOME/lfs/REPO.git (store.repo_root says why)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gitserve import acl, repos
from gitserve.authkeys import BUILDER
from gitserve.mirror.config import COPY, ELSEWHERE, RepoMirror, repo_mirror
from gitserve.settings import Settings

from .access import LfsAccess
from .locks import LockTable
from .store import LfsError, LfsStore, repo_root

if TYPE_CHECKING:
    from gitserve.acl import Rules


def store_for(settings: Settings, repo: str) -> LfsStore:
    return LfsStore(repo_root(settings.lfs_dir, repo), settings.server.max_lfs_object_bytes)


def head_ref(settings: Settings, repo: str) -> str:
    """The branch REPO's HEAD names (`any` when it cannot be read)."""
    try:
        head = (repos.path(settings, repo) / "HEAD").read_text().strip()
    except (OSError, repos.RepoError):
        return "any"
    return head[5:].strip() if head.startswith("ref: refs/") else "any"


def locks_for(settings: Settings, repo: str) -> LockTable:
    return LockTable(repo_root(settings.lfs_dir, repo), default_ref=head_ref(settings, repo),
                     max_locks=settings.server.max_lfs_locks)


def access_for(settings: Settings, rules: Rules, repo: str, user: str) -> LfsAccess:
    """LfsAccess of USER on the existing repository REPO under RULES (Gitolite decisions,
    wild-repo roles included). LFS never creates a repository: an unknown one is refused by
    the transports exactly like one the user may not read."""
    repo_dir = repos.path(settings, repo)

    def check(perm: str, ref: str) -> bool:
        if perm != "R" and repos.down_message(settings, repo) is not None:
            return False  # `writable ... off` stops LFS uploads and locks as it stops pushes
        return acl.can(rules, repo, user, perm, ref, repo_dir=repo_dir)

    mirrored = _mirrored(settings, rules, repo)  # options and wild info read once
    return LfsAccess(user, check, locks_elsewhere=locks_elsewhere(repo, *mirrored),
                     lock_ref=head_ref(settings, repo),
                     uploads_elsewhere=uploads_elsewhere(repo, *mirrored))


def _mirrored(settings: Settings, rules: Rules, repo: str) -> tuple[str, RepoMirror, str]:
    """(this host's name, REPO's mirror, this host's mode for it); mode "" when this host
    does not mirror."""
    hostname = settings.server.hostname
    if not hostname:
        return "", RepoMirror(), ""
    mirror = repo_mirror(rules.options(repo, wild=repos.wild_info(settings, repo)))
    return hostname, mirror, mirror.mode(hostname)


def uploads_elsewhere(repo: str, hostname: str, mirror: RepoMirror, mode: str) -> str:
    """Gitolite's refusal of a push to this host, for an LFS upload ("" when it is taken
    here): on a copy the objects belong on the master, where the pushes are checked and from
    where every slave gets them (HOSTNAME, MIRROR, MODE: `_mirrored`)."""
    if mode == COPY:
        return f"{hostname}: pushing '{repo}' to copy '{hostname}' not allowed"
    if mode == ELSEWHERE:
        return f"{hostname}: '{repo}' is mirrored but not here"
    return ""


def locks_elsewhere(repo: str, hostname: str, mirror: RepoMirror, mode: str) -> str:
    """Why REPO's LFS locks are not kept on this host ("" when they are): on a mirror's copy
    a lock would sit in a table no push consults (a slave forwards pushes to its master)."""
    if mode == COPY:
        return f"{hostname}: '{repo}' is a copy; LFS locks are kept on its master '{mirror.master}'"
    if mode == ELSEWHERE:
        return f"{hostname}: '{repo}' is mirrored but not here"
    return ""


OPERATIONS = {"download": "R", "upload": "W"}


def open_for(settings: Settings, rules: Rules, repo: str, user: str,
             operation: str) -> LfsAccess:
    """Check #1 for an LFS operation over ssh (R to download, W to upload, ref `any`), worded
    as Gitolite words a git service's: an unknown repository and a forbidden one give the same
    line. Returns USER's LfsAccess; raises LfsError(403, Gitolite's message)."""
    perm = OPERATIONS.get(operation)
    if perm is None:
        raise LfsError(400, f"unknown operation {operation!r}: upload or download")
    denied = f"{perm} any {repo} {user} DENIED by fallthru\n(or you mis-spelled the reponame)"
    if not repos.exists(settings, repo):
        raise LfsError(403, denied)
    if user == BUILDER:  # build workers fetch LFS objects of the commit they build
        if perm != "R":
            raise LfsError(403, denied)
        return LfsAccess(user, lambda p, ref: p == "R")
    wild = repos.wild_info(settings, repo)
    decision = rules.check(repo, user, perm, "any", wild=wild, exists=True)
    if not decision.allowed:
        raise LfsError(403, f"{decision.message}\n(or you mis-spelled the reponame)")
    down = repos.down_message(settings, repo) if perm != "R" else None
    if down is not None:
        raise LfsError(403, down.rstrip("\n"))
    return access_for(settings, rules, repo, user)
