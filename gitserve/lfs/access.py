"""What one user may do with one repository's LFS objects and locks (SPEC §11).

R downloads; W uploads (W on the ref the client names, as Gitolite's check #2 asks for a push
to it, else W on `any`); locks need W; breaking somebody else's lock needs RW+ (`+`). The
decision itself comes from the Gitolite rules through CHECK, so this module never reads a conf.

Creating a lock needs W on the repository's lock ref (LOCK_REF: the branch HEAD names, the
default branch) as well as on the ref the client names: a lock is enforced on every ref
(gitserve/lfs/pushcheck.py), so taking one stops everybody else's pushes to the default
branch, which only someone who may push there may do. With Gitolite's usual
`RW+ personal/USER/ = @all`, W on one's own branches is W on *some* ref, never the right to
freeze the team's files (GitHub and GitLab likewise give locks to those with push access to
the repository, not to a branch of their own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .store import LfsError

Check = Callable[[str, str], bool]  # (perm, ref or "any") -> allowed


def full_ref(ref: str) -> str:
    """git-lfs sends `refs/heads/x`; older clients a bare branch name."""
    if not ref or ref == "any":
        return "any"
    if "\x00" in ref or "\n" in ref or len(ref) > 1024:
        raise LfsError(422, "invalid ref name")
    return ref if ref.startswith("refs/") else f"refs/heads/{ref}"


@dataclass(frozen=True)
class LfsAccess:
    user: str
    check: Check
    # set on a mirror's copy: why locks are not taken or broken here (the master's table is
    # the one its pushes, forwarded ones included, are checked against)
    locks_elsewhere: str = ""
    # the ref whose W a new lock needs besides the named one (HEAD's branch; "any" unknown)
    lock_ref: str = "any"
    # set on a mirror's copy: Gitolite's refusal of a push here (objects go to the master,
    # which mirrors them; over ssh a redirectOK slave forwards the whole upload session)
    uploads_elsewhere: str = ""

    def can_download(self) -> bool:
        return self.check("R", "any")

    def can_upload(self, ref: str = "") -> bool:
        if self.uploads_elsewhere and self.check("W", full_ref(ref)):
            raise LfsError(403, self.uploads_elsewhere)
        return self.check("W", full_ref(ref))

    def can_lock(self, ref: str = "") -> bool:
        if self.locks_elsewhere:
            raise LfsError(403, self.locks_elsewhere)
        return self.check("W", full_ref(ref))

    def lock_refusal(self, ref: str = "") -> str:
        """Why this user may not create a lock naming REF ("" when he may)."""
        if self.locks_elsewhere:
            raise LfsError(403, self.locks_elsewhere)
        named = full_ref(ref)
        if not self.check("W", named):
            return f"locking needs W for {self.user}"
        if self.lock_ref != "any" and named != self.lock_ref and not self.check("W", self.lock_ref):
            return (f"locking needs W on {self.lock_ref} for {self.user}: a lock holds every "
                    "branch, so only those who may push to the default branch take one")
        return ""

    def can_force_unlock(self, ref: str = "") -> bool:
        if self.locks_elsewhere:
            raise LfsError(403, self.locks_elsewhere)
        return self.check("+", full_ref(ref))
