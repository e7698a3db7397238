"""Changing the admin repo: every change is ONE commit on master, moved by compare-and-swap.

`gitserve admin add-key|remove-key|set-conf` and `gitserve init` write here; a push to
master goes through receive-pack instead (validated there by tree.validate_commit). The new
tree is validated before any object is written, and master moves only if it still holds
the tip the change was computed on: a push landing meanwhile makes the change be recomputed
on top of it, so neither is lost.
"""

from __future__ import annotations

import random
import re
import time
from typing import Callable

from dulwich.file import FileLocked
from dulwich.object_store import commit_tree_changes
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from gitserve import audit, keys, repos
from gitserve.settings import Settings

from .commits import FILE_MODE, make_commit, who
from .compile import sync_authorized_keys
from .migrate import mark_on_master
from .state import read_master
from .tree import (ADMIN_BRANCH, KEYDIR, MAIN_CONF, AdminError, KeyEntry, build, keydir_entries,
                   load_rules, option_problems, tree_files)

CAS_RETRIES = 100  # with a random 5-50ms pause: gives up after seconds of contention

Change = Callable[[dict[str, bytes]], tuple[dict[str, "bytes | None"], str]]


def commit_change(settings: Settings, change: Change, author: str) -> str:
    """Apply CHANGE to the admin tree as ONE commit on master; returns its sha.

    CHANGE gets the current conf/keydir files and returns ({path: content or None to delete},
    message); it raises AdminError to refuse. The result is validated before any object is
    written, and master moves by compare-and-swap (recomputed on a newer tip)."""
    repo_path = settings.admin_repo
    for _ in range(CAS_RETRIES):
        tip = read_master(repo_path)
        if tip is None:
            raise AdminError(f"admin repository {repo_path} has no commit on {ADMIN_BRANCH}")
        repo = Repo(str(repo_path))
        try:
            old_commit = repo[tip.encode()]
            assert isinstance(old_commit, Commit)
            files = tree_files(repo, old_commit.tree)
            updates, message = change(dict(files))
            new_files = dict(files)
            for p, data in updates.items():
                if data is None:
                    new_files.pop(p, None)
                else:
                    new_files[p] = data
            build(new_files, settings.server.hostname)  # refuse before writing anything
            changes: list[tuple[bytes, int | None, bytes | None]] = []
            for p, data in updates.items():
                if data is None:
                    changes.append((p.encode(), None, None))
                else:
                    blob = Blob.from_string(data)
                    repo.object_store.add_object(blob)
                    changes.append((p.encode(), FILE_MODE, blob.id))
            tree_id = commit_tree_changes(repo.object_store, old_commit.tree, changes)
            commit = make_commit(tree_id, [old_commit.id], message, author)
            repo.object_store.add_object(commit)
            try:
                ok = repo.refs.set_if_equals(
                    ADMIN_BRANCH.encode(), tip.encode(), commit.id,
                    message=f"gitserve admin: {message.splitlines()[0]}".encode(),
                )
            except FileLocked:  # a push or another admin command holds the ref lock
                ok = False
        finally:
            repo.close()
        if ok:
            audit.record(settings, user=who(author), op="admin", repo=repos.ADMIN_REPO,
                         ref=ADMIN_BRANCH, old=tip, new=commit.id.decode(), result="updated",
                         reason=message.splitlines()[0])
            sync_authorized_keys(settings)
            return commit.id.decode()
        time.sleep(random.uniform(0.005, 0.05))  # noqa: S311 - jitter, not a secret
    raise AdminError("the admin repo kept changing; try again")


def commit_files(repo: Repo, parent: bytes, old: dict[str, bytes], new: dict[str, bytes],
                 author: str, message: str) -> bytes:
    """A commit on PARENT whose conf/ and keydir/ are NEW instead of OLD (other paths kept);
    used when an imported checkout differs from its admin repo's tip. Returns its sha."""
    changes: list[tuple[bytes, int | None, bytes | None]] = []
    for p in sorted(set(old) - set(new)):
        changes.append((p.encode(), None, None))
    for p, data in sorted(new.items()):
        if old.get(p) != data:
            blob = Blob.from_string(data)
            repo.object_store.add_object(blob)
            changes.append((p.encode(), FILE_MODE, blob.id))
    parent_commit = repo[parent]
    assert isinstance(parent_commit, Commit)
    tree_id = commit_tree_changes(repo.object_store, parent_commit.tree, changes)
    commit = make_commit(tree_id, [parent], message, author)
    repo.object_store.add_object(commit)
    return commit.id


def _parse_key_text(key_text: str) -> keys.PublicKey:
    try:
        key = keys.parse_file_text(key_text)
    except keys.InvalidKey as exc:
        raise AdminError(f"invalid key: {exc}") from None
    if not key.verifiable:
        raise AdminError(f"{key.key_type} keys cannot be verified by this server; "
                         "use an ed25519, ecdsa or rsa key")
    return key


def add_key(settings: Settings, user: str, key_text: str, author: str) -> tuple[KeyEntry, str]:
    """Add one key as keydir/USER.pub (USER may be `alice@label` for a further key).
    Returns (entry, commit sha). Refuses a key another user has, or that USER already has."""
    try:
        stem = keys.keyfile_stem_for(user)
        path = f"{KEYDIR}/{stem}.pub"
        owner = keys.check_keyfile_path(f"{stem}.pub")
    except keys.InvalidKey as exc:
        raise AdminError(str(exc)) from None
    key = _parse_key_text(key_text)

    def change(files: dict[str, bytes]) -> tuple[dict[str, bytes | None], str]:
        entries, _ = keydir_entries(files)
        for e in entries:
            if e.key.blob == key.blob:
                if e.user == owner:
                    raise AdminError(f"{owner} already has this key ({e.path})")
                raise AdminError(f"key {key.fingerprint} already belongs to user {e.user} ({e.path})")
        if path in files:
            raise AdminError(f"{path} already exists; use {owner}@LABEL to add another key for {owner}")
        msg = (f"add-key: {path} for {owner} ({key.label} {key.fingerprint})\n\n"
               f"Added by {who(author)} with `gitserve admin add-key`.")
        return {path: (key.openssh() + "\n").encode()}, msg

    sha = commit_change(settings, change, author)
    return KeyEntry(user=owner, path=path, key=key), sha


def remove_key(
    settings: Settings, user: str, fingerprint: str | None = None, *, author: str
) -> tuple[list[KeyEntry], str]:
    """Remove USER's keys (all, or the one with FINGERPRINT; `alice@laptop` names one file).
    Returns (removed entries, commit sha)."""
    if fingerprint is not None and not re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", fingerprint):
        raise AdminError(f"invalid fingerprint {fingerprint!r} (expected SHA256:... as ssh-keygen -lf prints)")
    try:
        stem = keys.keyfile_stem_for(user)
        owner = keys.check_keyfile_path(f"{stem}.pub")
    except keys.InvalidKey as exc:
        raise AdminError(str(exc)) from None
    removed: list[KeyEntry] = []

    def change(files: dict[str, bytes]) -> tuple[dict[str, bytes | None], str]:
        entries, _ = keydir_entries(files)
        if stem != owner:  # alice@laptop: that one file
            mine = [e for e in entries if e.path.rsplit("/", 1)[-1] == f"{stem}.pub"]
        else:
            mine = [e for e in entries if e.user == owner]
        # duplicate files of the same key are not in entries; remove them too
        dup_paths = [p for p in files if p.startswith(KEYDIR + "/") and p.endswith(".pub")
                     and p not in {e.path for e in entries}]
        if not mine:
            raise AdminError(f"no keys for user {user}")
        if fingerprint is not None:
            mine = [e for e in mine if e.fingerprint == fingerprint]
            if not mine:
                raise AdminError(f"user {user} has no key {fingerprint}")
        blobs = {e.key.blob for e in mine}
        extra = []
        for p in dup_paths:
            try:
                if (keys.check_keyfile_path(p[len(KEYDIR) + 1 :]) == owner
                        and keys.parse_file_text(files[p].decode()).blob in blobs):
                    extra.append(p)
            except (keys.InvalidKey, UnicodeDecodeError):
                continue
        removed[:] = mine
        lines = "\n".join(f"  {e.path} ({e.key.label} {e.fingerprint})" for e in mine)
        msg = (f"remove-key: {len(mine)} key{'s' if len(mine) != 1 else ''} of {owner}\n\n"
               f"{lines}\n\nRemoved by {who(author)} with `gitserve admin remove-key`.")
        upd: dict[str, bytes | None] = {e.path: None for e in mine}
        upd.update({p: None for p in extra})
        return upd, msg

    sha = commit_change(settings, change, author)
    return list(removed), sha


class _Unchanged(Exception):
    """Raised inside a change to stop without a commit (set-conf with the same text)."""


def set_conf(settings: Settings, text: str, author: str) -> str | None:
    """Replace conf/gitolite.conf (validated with the included files beside it).
    Returns the new commit sha, or None when the text is unchanged."""
    if "\x00" in text:
        raise AdminError("conf contains a NUL byte")
    data = text.encode("utf-8")

    def change(files: dict[str, bytes]) -> tuple[dict[str, bytes | None], str]:
        if files.get(MAIN_CONF) == data:
            raise _Unchanged()
        option_problems(load_rules({**files, MAIN_CONF: data}, settings.server.hostname,
                                   settings.server.refex_expr),
                        settings.hooks_dir)
        msg = (f"set-conf: replace {MAIN_CONF}\n\n"
               f"Set by {who(author)} with `gitserve admin set-conf`.")
        return {MAIN_CONF: data}, msg

    try:
        return commit_change(settings, change, author)
    except _Unchanged:
        return None


def create_admin_repo(settings: Settings, files: dict[str, bytes], author: str, message: str) -> str:
    """Create the admin repo with FILES (conf/..., keydir/...) as its first commit on master
    (validated first); used by `gitserve init`. Returns the commit sha."""
    build(files, settings.server.hostname, settings.server.refex_expr)
    path = repos.create(settings, repos.ADMIN_REPO)
    repo = Repo(str(path))
    try:
        changes: list[tuple[bytes, int | None, bytes | None]] = []
        for p, data in sorted(files.items()):
            blob = Blob.from_string(data)
            repo.object_store.add_object(blob)
            changes.append((p.encode(), FILE_MODE, blob.id))
        tree_id = commit_tree_changes(repo.object_store, Tree(), changes)
        commit = make_commit(tree_id, [], message, author)
        repo.object_store.add_object(commit)
        branch = ADMIN_BRANCH.encode()
        repo.refs.set_symbolic_ref(b"HEAD", branch)
        if not repo.refs.add_if_new(branch, commit.id, message=b"gitserve init"):
            raise AdminError("admin repository already has a commit")
    finally:
        repo.close()
    mark_on_master(settings)
    return commit.id.decode()
