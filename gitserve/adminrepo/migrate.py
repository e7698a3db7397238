"""Moving an older home's admin branch to master: once, when the server starts.

Homes made before the admin branch was Gitolite's `master` had HEAD name `main` (or another
branch) and took their rules from it. `gitserve serve` (and `gitserve shell`, the start of
each connection behind a system sshd) calls `migrate_branch` before anything reads the
rules; the read model itself only ever reads master.

HEAD is something a user can move (the optional `symbolic-ref` command), so a HEAD naming
another branch is applied only when it can be the old admin branch: the home has never been
on master (no marker file) and the branch's tip is a valid admin tree. Once a home is on
master, the marker `gitserve-admin-branch` in the admin repo records it, and a HEAD moved
later is pointed back at master without applying anything.
"""

from __future__ import annotations

from dulwich.graph import can_fast_forward
from dulwich.repo import Repo

from gitserve import audit, repos
from gitserve.fsutil import atomic_write, locked
from gitserve.settings import Settings

from .commits import make_commit
from .state import forget
from .tree import ADMIN_BRANCH, AdminError, validate_commit

MARKER = "gitserve-admin-branch"  # in the admin repo: "refs/heads/master" once it is in force


def mark_on_master(settings: Settings) -> None:
    """Record that master is this home's admin branch (init, and the first start on master)."""
    atomic_write(settings.admin_repo / MARKER, (ADMIN_BRANCH + "\n").encode())


def _on_master(settings: Settings) -> bool:
    try:
        return (settings.admin_repo / MARKER).read_text().strip() == ADMIN_BRANCH
    except OSError:
        return False


def _head(settings: Settings) -> str | None:
    try:
        head = (settings.admin_repo / "HEAD").read_text().strip()
    except OSError:
        raise AdminError(f"no admin repository at {settings.admin_repo}; run `gitserve init`") from None
    return head[4:].strip() if head.startswith("ref:") else None


def migrate_branch(settings: Settings) -> str | None:
    """Make `master` the admin branch of a home created when it was `main` (or any other).

    The move loses no history: master takes the old branch's tip when it is new or behind
    it (a ref move), otherwise (someone pushed a master that was stored but never applied)
    one merge commit with both tips as parents and the old branch's tree, the rules in
    force. HEAD then names master and the old branch, now contained in master, is removed.
    A HEAD moved away from master after the home was on master is only pointed back.
    Returns a line saying what was done, or None when there was nothing to do."""
    head = _head(settings)
    if head == ADMIN_BRANCH:
        if not _on_master(settings):
            mark_on_master(settings)
        return None
    master = ADMIN_BRANCH.encode()
    with locked(settings.run_dir / "admin-branch.lock"):
        repo = Repo(str(settings.admin_repo))
        try:
            old = repo.refs.get_symrefs().get(b"HEAD")
            if old is None or old == master:
                mark_on_master(settings)
                return None
            refs = repo.refs.as_dict()
            old_sha, master_sha = refs.get(old), refs.get(master)
            if _on_master(settings) or old_sha is None:
                repo.refs.set_symbolic_ref(b"HEAD", master)
                why = ("which has no commit" if old_sha is None
                       else "not applied: master is the admin branch")
                note = f"gitolite-admin: HEAD now names master (it named {old.decode()}, {why})"
                _audit(settings, master_sha, master_sha, f"HEAD {old.decode()} set back to master")
                mark_on_master(settings)
                return note
            reason = validate_commit(repo, old_sha, settings.hooks_dir, settings.server.hostname,
                                     settings.server.refex_expr)
            if reason:
                raise AdminError(f"gitolite-admin: {old.decode()} cannot become the admin branch "
                                 f"master: {reason}")
            if master_sha is None or master_sha == old_sha or can_fast_forward(repo, master_sha, old_sha):
                new_sha, how = old_sha, "moved"
            else:
                old_commit = repo[old_sha]
                merge = make_commit(
                    old_commit.tree, [master_sha, old_sha],
                    f"Make master the admin branch (Gitolite's)\n\nThe rules in force were on "
                    f"{old.decode()} ({old_sha.decode()[:12]}); master ({master_sha.decode()[:12]}) "
                    "had been pushed but never applied. Both histories are kept; the tree is "
                    f"{old.decode()}'s.", "gitserve")
                repo.object_store.add_object(merge)
                new_sha, how = merge.id, "merged"
            if master_sha is None:
                ok = repo.refs.add_if_new(master, new_sha, message=b"gitserve: admin branch is master")
            else:
                ok = repo.refs.set_if_equals(master, master_sha, new_sha,
                                             message=b"gitserve: admin branch is master")
            if not ok:
                raise AdminError("the admin repo changed while moving its branch to master; try again")
            repo.refs.set_symbolic_ref(b"HEAD", master)
            repo.refs.remove_if_equals(old, old_sha)
            mark_on_master(settings)
        finally:
            repo.close()
    forget(settings)
    name = old.decode().removeprefix("refs/heads/")
    _audit(settings, master_sha, new_sha, f"admin branch {name} {how} into master")
    return (f"gitolite-admin: the admin branch is now master ({name} {how} into it at "
            f"{new_sha.decode()[:12]}; no history lost)")


def _audit(settings: Settings, old: bytes | None, new: bytes | None, reason: str) -> None:
    zero = "0" * 40
    audit.record(settings, user="gitserve", op="admin", repo=repos.ADMIN_REPO, ref=ADMIN_BRANCH,
                 old=(old or b"").decode() or zero, new=(new or b"").decode() or zero,
                 result="updated", reason=reason)

