"""The `Inspector` check #2 needs, answered from a dulwich repository.

It reproduces the git commands Gitolite's update hook and VREF helpers run (merge-base,
rev-list --merges, diff --name-only, log --name-only, diff --stat) on the repository as
it is during receive-pack: new objects present, refs not yet moved. Rename detection is
on, as it is for git's porcelain diff and log.
"""

from __future__ import annotations

import re
from typing import Iterable

from dulwich.diff_tree import CHANGE_ADD, CHANGE_DELETE, RenameDetector, tree_changes
from dulwich.graph import can_fast_forward
from dulwich.objects import Blob, Commit, Tag
from dulwich.repo import Repo

from ..names import ZERO_SHA

BINARY_PROBE = 8000  # git looks for a NUL byte in this many leading bytes
_EMAIL = re.compile(rb"<([^>]*)>")


class DulwichInspector:
    """Answers about pushed objects in REPO; cheap to create, one per push."""

    def __init__(self, repo: Repo, exclude_refs: Iterable[bytes] | None = None) -> None:
        self.repo = repo
        self._exclude = exclude_refs

    # -- helpers -------------------------------------------------------------------
    def _peeled(self, sha: str):
        """The object SHA names, annotated tags peeled (git's `sha^{}`)."""
        obj = self.repo[sha.encode()]
        for _ in range(100):
            if not isinstance(obj, Tag):
                break
            obj = self.repo[obj.object[1]]
        return obj

    def _commit(self, sha: str) -> Commit:
        obj = self._peeled(sha)
        if not isinstance(obj, Commit):
            raise ValueError(f"{sha} is not a commit")
        return obj

    def _commit_id(self, sha: str) -> bytes:
        obj = self._peeled(sha)
        return obj.id if isinstance(obj, Commit) else sha.encode()

    def _tree(self, sha: str) -> bytes | None:
        if sha == ZERO_SHA:
            return None
        obj = self._peeled(sha)
        return obj.tree if isinstance(obj, Commit) else obj.id

    def _changes(self, old_tree: bytes | None, new_tree: bytes | None):
        store = self.repo.object_store
        detector = RenameDetector(store, rename_threshold=50, max_files=1000)
        changes = list(tree_changes(store, old_tree, new_tree, rename_detector=detector))
        changes.sort(key=lambda c: _new_path(c) or _old_path(c) or b"")
        return changes

    @staticmethod
    def _path(change) -> str:
        path = _old_path(change) if change.type == CHANGE_DELETE else _new_path(change)
        return (path or b"").decode("utf-8", "surrogateescape")

    # -- the Inspector protocol ------------------------------------------------------------
    def is_ancestor(self, old: str, new: str) -> bool:
        try:
            return can_fast_forward(self.repo, self._commit_id(old), self._commit_id(new))
        except (KeyError, AttributeError, ValueError):
            return False

    def has_merge(self, old: str, new: str) -> bool:
        walker = self.repo.get_walker(include=[self._commit_id(new)],
                                      exclude=[self._commit_id(old)])
        return any(len(entry.commit.parents) > 1 for entry in walker)

    def changed_paths(self, old: str, new: str) -> list[str]:
        return [self._path(c) for c in self._changes(self._tree(old), self._tree(new))]

    def pushed_paths(self, new: str, added_only: bool) -> set[str]:
        if self._exclude is None:
            exclude = [sha for ref, sha in self.repo.get_refs().items()
                       if ref != b"HEAD" and ref.startswith(b"refs/")]
        else:
            exclude = list(self._exclude)
        exclude = [self._commit_id(sha.decode()) for sha in exclude
                   if sha in self.repo.object_store]
        walker = self.repo.get_walker(include=[self._commit_id(new)], exclude=exclude)
        paths: set[str] = set()
        for entry in walker:
            commit = entry.commit
            if len(commit.parents) > 1:
                continue  # git log shows no diff for merges by default
            parent_tree = self.repo[commit.parents[0]].tree if commit.parents else None
            for change in self._changes(parent_tree, commit.tree):
                if added_only and change.type != CHANGE_ADD:
                    continue
                paths.add(self._path(change))
        return paths

    def new_binary_files(self, old: str, new: str) -> list[tuple[str, int]]:
        changes = self._changes(self._tree(old), self._tree(new))
        names = []
        for c in changes:
            op, np_ = _old_path(c), _new_path(c)
            if op and np_ and op != np_:
                names.append(f"{op.decode('utf-8', 'replace')} => "
                             f"{np_.decode('utf-8', 'replace')}")
            else:
                names.append(self._path(c))
        width = max((len(n) for n in names), default=0)
        out = []
        for c, name in zip(changes, names):
            new_e, old_e = _entry(c.new), _entry(c.old)
            if new_e is None or new_e.sha is None or new_e.mode is None \
                    or (new_e.mode & 0o170000) != 0o100000:
                continue
            if old_e is not None and old_e.sha is not None:
                old_blob = self.repo[old_e.sha]
                if not isinstance(old_blob, Blob) or old_blob.raw_length() != 0:
                    continue
            blob = self.repo[new_e.sha]
            if not isinstance(blob, Blob):
                continue
            data = blob.as_raw_string()
            if b"\0" not in data[:BINARY_PROBE]:
                continue
            # the VREF helper reads the name from `git diff --stat`, padded to the column
            out.append((name.ljust(width), len(data)))
        return out

    def top_commit(self, new: str) -> tuple[str, str]:
        # like `git cat-file -p NEW` (the tag itself for an annotated tag) and
        # `git log -1 --format=%ae NEW` (its commit)
        commit = self._commit(new)
        m = _EMAIL.search(commit.author)
        email = m.group(1).decode("utf-8", "replace") if m else ""
        raw = self.repo[new.encode()].as_raw_string()
        return raw.decode("utf-8", "replace"), email


def _entry(e):
    """A TreeChange side, or None (dulwich gives None or an all-None entry for 'absent')."""
    if e is None or getattr(e, "path", None) is None:
        return None
    return e


def _old_path(change) -> bytes | None:
    e = _entry(change.old)
    return e.path if e else None


def _new_path(change) -> bytes | None:
    e = _entry(change.new)
    return e.path if e else None
