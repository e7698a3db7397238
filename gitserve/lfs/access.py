"""What one user may do with one repository's LFS objects and locks (SPEC §11).

R downloads; W uploads (W on the ref the client names, as Gitolite's check #2 asks for a push
to it, else W on `any`); locks need W; breaking somebody else's lock needs RW+ (`+`). The
decision itself comes from the Gitolite rules through CHECK, so this module never reads a conf.
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

    def can_download(self) -> bool:
        return self.check("R", "any")

    def can_upload(self, ref: str = "") -> bool:
        return self.check("W", full_ref(ref))

    def can_lock(self, ref: str = "") -> bool:
        if self.locks_elsewhere:
            raise LfsError(403, self.locks_elsewhere)
        return self.check("W", full_ref(ref))

    def can_force_unlock(self, ref: str = "") -> bool:
        if self.locks_elsewhere:
            raise LfsError(403, self.locks_elsewhere)
        return self.check("+", full_ref(ref))
