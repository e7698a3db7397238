"""Answers check #2 needs about a pushed update, from the repository with dulwich.

Implements `gitserve.acl.Inspector`. It runs after the pushed objects were checked and
moved in but before any ref moved, so "existing refs" still means the refs before the push
(what Gitolite's update hook sees with `--not --all`).
"""

from __future__ import annotations

from dulwich.diff_tree import CHANGE_ADD, tree_changes
from dulwich.graph import can_fast_forward
from dulwich.objects import Blob, Commit, Tag
from dulwich.repo import Repo

ZERO_SHA = "0" * 40
_BINARY_PROBE = 8000  # git's buffer_is_binary looks at the first 8000 bytes


class DulwichInspector:
    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._existing = [sha for name, sha in repo.refs.as_dict().items()
                          if name.startswith(b"refs/")]

    def _commit(self, sha: str) -> Commit | None:
        if sha == ZERO_SHA:
            return None
        obj = self.repo[sha.encode()]
        while isinstance(obj, Tag):  # an annotated tag: look at what it points to
            obj = self.repo[obj.object[1]]
        return obj if isinstance(obj, Commit) else None

    def _tree(self, sha: str) -> bytes | None:
        commit = self._commit(sha)
        return commit.tree if commit is not None else None

    def is_ancestor(self, old: str, new: str) -> bool:
        old_c, new_c = self._commit(old), self._commit(new)
        if old_c is None or new_c is None:
            return False
        return bool(can_fast_forward(self.repo, old_c.id, new_c.id))

    def _new_commits(self, new: str, exclude: list[bytes]) -> list[Commit]:
        commit = self._commit(new)
        if commit is None:
            return []
        walker = self.repo.get_walker(include=[commit.id], exclude=exclude or None)
        return [entry.commit for entry in walker]

    def has_merge(self, old: str, new: str) -> bool:
        exclude = [] if old == ZERO_SHA else [old.encode()]
        return any(len(c.parents) > 1 for c in self._new_commits(new, exclude))

    def changed_paths(self, old: str, new: str) -> list[str]:
        out: list[str] = []
        for change in tree_changes(self.repo.object_store, self._tree(old), self._tree(new)):
            for entry in (change.old, change.new):
                if entry is not None and entry.path is not None:
                    path = entry.path.decode("utf-8", "surrogateescape")
                    if path not in out:
                        out.append(path)
        return out

    def pushed_paths(self, new: str, added_only: bool) -> set[str]:
        out: set[str] = set()
        for commit in self._new_commits(new, list(self._existing)):
            if len(commit.parents) > 1:
                continue  # `git log --name-only` shows no paths for merges
            parent_tree = self.repo[commit.parents[0]].tree if commit.parents else None
            for change in tree_changes(self.repo.object_store, parent_tree, commit.tree):
                if added_only and change.type != CHANGE_ADD:
                    continue
                entry = change.new if change.new is not None and change.new.path else change.old
                if entry is not None and entry.path is not None:
                    out.add(entry.path.decode("utf-8", "surrogateescape"))
        return out

    def new_binary_files(self, old: str, new: str) -> list[tuple[str, int]]:
        store = self.repo.object_store
        out: list[tuple[str, int]] = []
        for change in tree_changes(store, self._tree(old), self._tree(new)):
            if change.new is None or change.new.sha is None:
                continue
            was_empty = change.old is None or change.old.sha is None or \
                _size(store, change.old.sha) == 0
            if not was_empty:
                continue
            blob = store[change.new.sha]
            if isinstance(blob, Blob) and _is_binary(blob):
                out.append((change.new.path.decode("utf-8", "surrogateescape"),
                            len(blob.as_raw_string())))
        return out

    def top_commit(self, new: str) -> tuple[str, str]:
        commit = self._commit(new)
        if commit is None:
            return "", ""
        author = commit.author.decode("utf-8", "replace")
        email = author[author.find("<") + 1:author.rfind(">")] if "<" in author else ""
        return commit.as_raw_string().decode("utf-8", "replace"), email


def _size(store, sha: bytes) -> int:  # noqa: ANN001
    try:
        return len(store[sha].as_raw_string())
    except KeyError:
        return 0


def _is_binary(blob: Blob) -> bool:
    chunks = blob.chunked
    head = b"".join(chunks)[:_BINARY_PROBE] if chunks else b""
    return b"\x00" in head
