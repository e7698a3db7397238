"""The read model: rules and keys in force, read from `refs/heads/master` of the admin repo.

It never writes and never follows HEAD: HEAD of gitolite-admin only says what a clone checks
out, and a user who can move it (symbolic-ref) must not be able to choose the rules. Moving
an older home's admin branch to master is done once at start (migrate.py), not here.

`current()` is called once per SSH connection: it costs one small file read while the tip is
unchanged, and a new tip is loaded on the next call without a restart.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dulwich.repo import Repo

from gitserve import keys, repos
from gitserve.settings import Settings

from .tree import ADMIN_BRANCH, BUILDER, AdminError, KeyEntry, build, tree_files

if TYPE_CHECKING:
    from pathlib import Path

    from gitserve.acl import Rules

log = logging.getLogger(__name__)

_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass
class AdminState:
    """Rules and keys at one admin commit. Immutable once built; shared between threads."""

    commit: str
    branch: str  # ADMIN_BRANCH
    rules: Rules  # the compiled conf at this commit
    keys: tuple[KeyEntry, ...]
    warnings: tuple[str, ...] = ()
    builder_blob: bytes | None = None
    _by_blob: dict[bytes, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_blob = {e.key.blob: e.user for e in self.keys if e.key.verifiable}

    def user_for_key(self, key_blob: bytes) -> str | None:
        """User owning this exact public-key blob; `:builder` for HOME/worker_key.pub."""
        user = self._by_blob.get(key_blob)
        if user is None and self.builder_blob is not None and key_blob == self.builder_blob:
            return BUILDER
        return user

    def keys_of(self, user: str) -> list[KeyEntry]:
        return [e for e in self.keys if e.user == user]

    @property
    def users(self) -> list[str]:
        return sorted({e.user for e in self.keys})


def _read_file(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:  # ELOOP: a symlinked ref file is not followed either
        raise AdminError(f"{path}: {exc.strerror}") from None
    try:
        return os.read(fd, 65536).decode("utf-8", "replace")
    except IsADirectoryError:
        return None
    finally:
        os.close(fd)


def read_master(repo_path: Path | str) -> str | None:
    """The sha `refs/heads/master` holds (loose, else packed-refs), or None when it has none.

    Two plain file reads, no dulwich Repo: this runs once per SSH connection. A symbolic
    master (`ref: ...`) is refused rather than followed: whoever can point it elsewhere
    would otherwise choose the rules."""
    base = os.fspath(repo_path)
    if not os.path.isdir(base + "/objects"):
        raise AdminError(f"no admin repository at {base}; run `gitserve init`")
    loose = _read_file(f"{base}/{ADMIN_BRANCH}")
    if loose is not None:
        value = loose.strip()
        if _SHA.fullmatch(value):
            return value
        if value.startswith("ref:"):
            raise AdminError(f"{ADMIN_BRANCH} of the admin repo is a symbolic ref "
                             f"({value[4:].strip()}); it is not followed")
        if value:
            raise AdminError(f"{ADMIN_BRANCH} of the admin repo is not a commit id")
    try:
        with open(base + "/packed-refs") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1] == ADMIN_BRANCH and _SHA.fullmatch(parts[0]):
                    return parts[0]
    except FileNotFoundError:
        pass
    return None


_cache: dict[str, AdminState] = {}
_bad_tip: dict[str, str] = {}  # home -> tip sha whose tree could not be used
_cache_lock = threading.Lock()


def forget(settings: Settings | None = None) -> None:
    """Drop the cached state of SETTINGS' home (every home with None): the next `current()`
    loads from the repository (tests that rewrite the repo behind gitserve's back)."""
    with _cache_lock:
        if settings is None:
            _cache.clear()
            _bad_tip.clear()
        else:
            _cache.pop(str(settings.home), None)
            _bad_tip.pop(str(settings.home), None)


def current(settings: Settings) -> AdminState:
    """Rules and keys at the tip of the admin repo's branch master (cached by tip sha).

    Pushes and admin commands never let a broken tree become the tip, but a tip written
    behind gitserve's back (a local `git push` into the bare repo) could be: then the last
    good state stays in force, as Gitolite keeps its old rules, and the error is logged
    once. Only with no good state to fall back on does this raise AdminError."""
    key = str(settings.home)
    repo_path = str(settings.admin_repo)
    state = _cache.get(key)
    try:
        sha = read_master(repo_path)
    except AdminError as exc:
        if state is None:
            raise
        _log_unusable(key, "unreadable", exc, state)
        return state
    if state is not None and (state.commit == sha or _bad_tip.get(key) == sha):
        return state
    with _cache_lock:
        state = _cache.get(key)
        if state is not None and (state.commit == sha or _bad_tip.get(key) == sha):
            return state
        try:
            new_state = _load_state(settings, repo_path, sha)
        except AdminError as exc:
            if state is None:
                raise
            _log_unusable(key, sha or "", exc, state)
            return state
        _cache[key] = new_state
        _bad_tip.pop(key, None)
        return new_state


def _log_unusable(key: str, sha: str, exc: AdminError, state: AdminState) -> None:
    if _bad_tip.get(key) == sha:
        return
    _bad_tip[key] = sha
    log.error("admin repo tip %s is unusable (%s); keeping the rules of %s",
              (sha or "none")[:12], exc, state.commit[:12])


def _load_state(settings: Settings, repo_path: str, sha: str | None) -> AdminState:
    if sha is None:
        raise AdminError(f"admin repository {repo_path} has no commit on {ADMIN_BRANCH}"
                         " (`gitserve serve` moves an older home's admin branch there)")
    repo = Repo(repo_path)
    try:
        try:
            commit = repo[sha.encode()]
        except KeyError:
            raise AdminError(f"admin repository {repo_path}: {ADMIN_BRANCH} points to missing {sha}") from None
        files = tree_files(repo, commit.tree)
    finally:
        repo.close()
    rules, entries, warnings = build(files, settings.server.hostname, settings.server.refex_expr)
    return AdminState(
        commit=sha,
        branch=ADMIN_BRANCH,
        rules=rules,
        keys=tuple(entries),
        warnings=tuple(warnings),
        builder_blob=_builder_blob(settings),
    )


def _builder_blob(settings: Settings) -> bytes | None:
    try:
        return keys.parse_file_text((settings.home / "worker_key.pub").read_text()).blob
    except (OSError, keys.InvalidKey):
        return None


def repo_options(settings: Settings, name: str) -> dict[str, str]:
    """The `option` lines that apply to repo NAME in the conf in force now (last one wins):
    what a retried build or a rollback must obey, not what applied when a build was queued."""
    wild = repos.wild_info(settings, name) if repos.exists(settings, name) else None
    return dict(current(settings).rules.options(name, wild=wild))
