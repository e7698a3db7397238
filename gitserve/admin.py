"""The admin repo (HOME/repositories/gitolite-admin.git): the single source of truth.

Access rules and keys are read from the tip of the admin repo's branch `master` (Gitolite's,
so an existing gitolite-admin clone keeps fetching and pushing it), never from files beside
it, so every change - a push, `admin add-key`, `set-conf` - is a commit and the history
says who changed what. `current()` is called once per SSH connection:
it costs two small file reads while the tip is unchanged, and a new tip is loaded on the
next call without a restart.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dulwich.objects import Blob, Commit, Tree
from dulwich.object_store import commit_tree_changes
from dulwich.file import FileLocked
from dulwich.repo import Repo

from gitserve import audit, authkeys, keys, repos
from gitserve.errors import GitserveError
from gitserve.fsutil import locked
from gitserve.settings import Settings

if TYPE_CHECKING:
    from gitserve.acl import Rules

log = logging.getLogger(__name__)

CONF_DIR = "conf"
KEYDIR = "keydir"
MAIN_CONF = "conf/gitolite.conf"
# The branch whose tip is in force, as in Gitolite; pushes to other branches are only stored.
ADMIN_BRANCH = "refs/heads/master"
BUILDER = authkeys.BUILDER  # internal identity of HOME/worker_key (no keydir name can produce it)
MAX_FILE = 4 * 1024 * 1024  # a conf or key file bigger than this is a mistake
FILE_MODE = 0o100644
# Gitolite only warns about these and carries on without the line; a conf that does not
# parse is refused here instead (SPEC §2), so nobody loses access to a typo.
FATAL_WARNINGS = ("syntax error, ignoring", "included file not found")
CAS_RETRIES = 100  # with a random 5-50ms pause: gives up after seconds of contention


class AdminError(GitserveError, ValueError):
    """An admin change or admin tree that must be refused (message is one line)."""


@dataclass(frozen=True)
class KeyEntry:
    user: str
    path: str  # "keydir/alice@laptop.pub"
    key: keys.PublicKey

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint


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


# --- reading the tip cheaply ---------------------------------------------------------


def _read_file(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    try:
        return os.read(fd, 65536).decode("utf-8", "replace")
    except IsADirectoryError:
        return None
    finally:
        os.close(fd)


def _read_tip(repo_path: Path | str) -> tuple[str, str | None]:
    """(branch ref HEAD names, its sha or None) with two plain file reads (no dulwich Repo):
    this runs once per SSH connection."""
    base = os.fspath(repo_path)
    head = _read_file(base + "/HEAD")
    if head is None:
        raise AdminError(f"no admin repository at {base}; run `gitserve init`")
    head = head.strip()
    if not head.startswith("ref: "):
        return "HEAD", head
    branch = head[5:].strip()
    sha = _read_file(f"{base}/{branch}")
    if sha is not None and len(sha.strip()) == 40:
        return branch, sha.strip()
    try:
        with open(base + "/packed-refs") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1] == branch:
                    return branch, parts[0]
    except FileNotFoundError:
        pass
    return branch, None


_cache: dict[str, AdminState] = {}
_bad_tip: dict[str, str] = {}  # home -> tip sha whose tree could not be used
_admin_paths: dict[str, str] = {}
_cache_lock = threading.Lock()


def current(settings: Settings) -> AdminState:
    """Rules and keys at the tip of the admin repo's branch master (cached by tip sha).

    Pushes and admin commands never let a broken tree become the tip, but a tip written
    behind gitserve's back (a local `git push` into the bare repo) could be: then the last
    good state stays in force, as Gitolite keeps its old rules, and a warning is printed
    once. Only with no good state to fall back on does this raise AdminError."""
    key = str(settings.home)
    repo_path = _admin_paths.get(key)
    if repo_path is None:
        repo_path = _admin_paths[key] = str(settings.admin_repo)
    branch, sha = _read_tip(repo_path)
    if branch != ADMIN_BRANCH:  # a home made before the admin branch was master
        migrate_branch(settings)
        branch, sha = _read_tip(repo_path)
    state = _cache.get(key)
    if state is not None and (state.commit == sha or _bad_tip.get(key) == sha):
        return state
    with _cache_lock:
        state = _cache.get(key)
        if state is not None and (state.commit == sha or _bad_tip.get(key) == sha):
            return state
        try:
            new_state = _load_state(settings, repo_path, branch, sha)
        except AdminError as exc:
            if state is None:
                raise
            _bad_tip[key] = sha or ""
            log.error("admin repo tip %s is unusable (%s); keeping the rules of %s",
                      (sha or "none")[:12], exc, state.commit[:12])
            return state
        _cache[key] = new_state
        _bad_tip.pop(key, None)
        return new_state


def _load_state(settings: Settings, repo_path: str, branch: str, sha: str | None) -> AdminState:
    if sha is None:
        raise AdminError(f"admin repository {repo_path} has no commit on {branch}")
    repo = Repo(repo_path)
    try:
        try:
            commit = repo[sha.encode()]
        except KeyError:
            raise AdminError(f"admin repository {repo_path}: {branch} points to missing {sha}") from None
        files = tree_files(repo, commit.tree)
    finally:
        repo.close()
    rules, entries, warnings = build(files)
    return AdminState(
        commit=sha,
        branch=branch,
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


# --- turning conf/ and keydir/ into rules and keys -----------------------------------


# Blob contents by sha (content-addressed, so shared by every repo and commit): a new admin
# tip with 5000 keys re-reads only the files that changed.
_blobs: dict[bytes, bytes] = {}
BLOB_CACHE_ENTRIES = 50000


def tree_files(repo: Repo, tree_id: bytes) -> dict[str, bytes]:
    """Every blob under conf/ and keydir/ of TREE_ID as {path: content}; refuses symlinks
    and submodules there (a symlinked include could read any file on the server)."""
    tree = repo[tree_id]
    files: dict[str, bytes] = {}
    for top in (CONF_DIR, KEYDIR):
        try:
            mode, sub = tree[top.encode()]
        except KeyError:
            continue
        if not stat.S_ISDIR(mode):
            raise AdminError(f"{top}: must be a directory")
        for entry in repo.object_store.iter_tree_contents(sub):
            rel = f"{top}/{entry.path.decode('utf-8', 'replace')}"
            if stat.S_ISLNK(entry.mode):
                raise AdminError(f"{rel}: symlinks are not allowed in the admin repo")
            if not stat.S_ISREG(entry.mode):
                raise AdminError(f"{rel}: submodules are not allowed in the admin repo")
            data = _blobs.get(entry.sha)
            if data is None:
                data = repo[entry.sha].as_raw_string()
                if len(_blobs) >= BLOB_CACHE_ENTRIES:
                    _blobs.clear()
                _blobs[entry.sha] = data
            files[rel] = data
    return files


@functools.lru_cache(maxsize=65536)
def _parse_key_file(data: bytes) -> keys.PublicKey:
    """Parsed keys are remembered by content: a new admin tip re-reads only changed keys."""
    if len(data) > MAX_FILE:
        raise keys.InvalidKey("file too large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise keys.InvalidKey("not a text file") from None
    return keys.parse_file_text(text)


def keydir_entries(files: dict[str, bytes]) -> tuple[list[KeyEntry], list[str]]:
    entries: list[KeyEntry] = []
    warnings: list[str] = []
    owner_of: dict[bytes, KeyEntry] = {}
    for p in sorted(files):
        if not p.startswith(KEYDIR + "/") or not p.endswith(".pub"):
            continue
        try:
            user = keys.check_keyfile_path(p[len(KEYDIR) + 1 :])
            key = _parse_key_file(files[p])
        except keys.InvalidKey as exc:
            msg = str(exc)
            raise AdminError(msg if msg.startswith(p) or msg.startswith("keydir/") else f"{p}: {msg}") from None
        seen = owner_of.get(key.blob)
        if seen is not None:
            if seen.user != user:
                raise AdminError(
                    f"{p}: key {key.fingerprint} already belongs to user {seen.user} ({seen.path})"
                )
            warnings.append(f"{p}: duplicates {seen.path}")
            continue
        if not key.verifiable:
            warnings.append(f"{p}: {key.key_type} keys cannot be verified by this server; "
                            f"{user} cannot log in with it")
        entry = KeyEntry(user=user, path=p, key=key)
        owner_of[key.blob] = entry
        entries.append(entry)
    return entries, warnings


def _load_rules(files: dict[str, bytes]) -> Any:
    from gitserve import acl

    if MAIN_CONF not in files:
        raise AdminError(f"{MAIN_CONF}: missing")
    conf: dict[str, str] = {}
    for p, data in files.items():
        if p.startswith(CONF_DIR + "/"):
            if len(data) > MAX_FILE:
                raise AdminError(f"{p}: file too large")
            conf[p[len(CONF_DIR) + 1 :]] = data.decode("utf-8", errors="surrogateescape")
    try:
        rules = acl.load_files(conf)
    except acl.ConfError as exc:
        raise AdminError(_one_line(str(exc))) from None
    for w in rules.warnings:
        if any(marker in w for marker in FATAL_WARNINGS):
            raise AdminError(_one_line(w.replace(", ignoring:", ":")))
    return rules


def _one_line(msg: str) -> str:
    return " ".join(msg.split())


def build(files: dict[str, bytes]) -> tuple[Any, list[KeyEntry], list[str]]:
    """(rules, key entries, warnings) for an admin tree given as {path: content};
    raises AdminError with the first problem (file:line for conf, keydir/x.pub: reason)."""
    rules = _load_rules(files)
    entries, warnings = keydir_entries(files)
    return rules, entries, warnings


def repo_options(settings: Settings, name: str) -> dict[str, str]:
    """The `option` lines that apply to repo NAME in the conf in force now (last one wins):
    what a retried build or a rollback must obey, not what applied when a build was queued."""
    wild = repos.wild_info(settings, name) if repos.exists(settings, name) else None
    return dict(current(settings).rules.options(name, wild=wild))


def option_problems(rules: Any, hooks_dir: Path | None) -> None:
    """Refuse gitserve options with unknown names or bad values (gitserve.options), file:line."""
    from gitserve import options

    found = options.problems(rules, options.Env(hooks_dir))
    if found:
        raise AdminError(found[0] + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))


def validate_commit(repo_path: Path | str | Repo, sha: str, hooks_dir: Path | None = None) -> str | None:
    """The one-line reason the admin tree at SHA is unusable, or None if it is valid.

    receive-pack calls this for pushes to the admin repo's branch master and rejects the
    ref with the returned message, so a broken conf never goes live. REPO_PATH may be an
    open dulwich Repo (e.g. one that sees a push's quarantined objects). Bad gitserve
    options are refused too; hook names are checked against HOOKS_DIR when given."""
    own = not isinstance(repo_path, Repo)
    repo = repo_path if isinstance(repo_path, Repo) else Repo(str(repo_path))
    try:
        try:
            obj = repo[sha.encode() if isinstance(sha, str) else sha]
        except KeyError:
            return f"commit {sha} not found"
        if not isinstance(obj, Commit):
            return f"{sha} is not a commit"
        rules, _entries, _warnings = build(tree_files(repo, obj.tree))
        option_problems(rules, hooks_dir)
    except AdminError as exc:
        return str(exc)
    finally:
        if own:
            repo.close()
    return None


def sync_authorized_keys(settings: Settings) -> str | None:
    """After an admin change: rewrite `[server] authorized_keys` (if set) for the keys now in
    force. The change itself already happened, so a failure here is reported, not raised;
    returns the one-line warning, or None."""
    if not settings.server.authorized_keys.strip():
        return None
    try:
        authkeys.sync(settings, lambda: current(settings))
    except (authkeys.AuthKeysError, AdminError) as exc:
        log.error("cannot update authorized_keys: %s", exc)
        return f"WARNING: authorized_keys not updated: {exc}"
    return None


def not_applied_note(refs: list[str]) -> str:
    """The one line a pusher sees for gitolite-admin refs other than master (stored only)."""
    names = ", ".join(r.removeprefix("refs/heads/") for r in refs)
    return (f"NOTE: gitolite-admin: {names} stored but not applied; "
            "only master is applied (git push origin HEAD:master)")


def compile(settings: Settings) -> list[str]:
    """Create the repos the current conf names that do not exist yet; returns their names."""
    state = current(settings)
    created = []
    for name in state.rules.repo_names():
        try:
            if repos.exists(settings, name):
                continue
            repos.create(settings, name)
        except repos.RepoError:
            continue  # an invalid or racing name: the conf parser already warned
        created.append(name)
    # Gitolite's post-compile triggers: git configs, description, daemon export, projects.list
    from gitserve import repoconf

    try:
        repoconf.apply_all(settings, state.rules)
    except (OSError, repoconf.ConfigKeyError) as exc:
        log.warning("repo configs not updated: %s", exc)
    return created


# --- changing the admin repo -------------------------------------------------------


def _who(author: str) -> str:
    return author.split(" <", 1)[0]


def _identity(author: str) -> bytes:
    author = " ".join(author.split()) or "unknown"
    if re.fullmatch(r".+ <[^<>]*>", author):
        return author.encode()
    return f"{author.replace('<', '').replace('>', '')} <>".encode()


def _commit(
    settings: Settings,
    change: Callable[[dict[str, bytes]], tuple[dict[str, bytes | None], str]],
    author: str,
) -> str:
    """Apply CHANGE to the admin tree as ONE commit on the admin branch (master).

    CHANGE gets the current conf/keydir files and returns ({path: content or None to delete},
    message); it raises AdminError to refuse. The result is validated before any object is
    written, and the branch moves by compare-and-swap: if a push lands meanwhile, the change
    is recomputed on top of it, so neither is lost."""
    repo_path = settings.admin_repo
    migrate_branch(settings)
    for _ in range(CAS_RETRIES):
        branch, tip = _read_tip(repo_path)
        if tip is None:
            raise AdminError(f"admin repository {repo_path} has no commit on {branch}")
        repo = Repo(str(repo_path))
        try:
            old_commit = repo[tip.encode()]
            files = tree_files(repo, old_commit.tree)
            updates, message = change(dict(files))
            new_files = dict(files)
            for p, data in updates.items():
                if data is None:
                    new_files.pop(p, None)
                else:
                    new_files[p] = data
            build(new_files)  # refuse before writing anything
            changes: list[tuple[bytes, int | None, bytes | None]] = []
            for p, data in updates.items():
                if data is None:
                    changes.append((p.encode(), None, None))
                else:
                    blob = Blob.from_string(data)
                    repo.object_store.add_object(blob)
                    changes.append((p.encode(), FILE_MODE, blob.id))
            tree_id = commit_tree_changes(repo.object_store, old_commit.tree, changes)
            commit = _make_commit(tree_id, [old_commit.id], message, author)
            repo.object_store.add_object(commit)
            try:
                ok = repo.refs.set_if_equals(
                    branch.encode(), tip.encode(), commit.id,
                    message=f"gitserve admin: {message.splitlines()[0]}".encode(),
                )
            except FileLocked:  # a push or another admin command holds the ref lock
                ok = False
        finally:
            repo.close()
        if ok:
            audit.record(settings, user=_who(author), op="admin", repo=repos.ADMIN_REPO, ref=branch,
                         old=tip, new=commit.id.decode(), result="updated",
                         reason=message.splitlines()[0])
            sync_authorized_keys(settings)
            return commit.id.decode()
        time.sleep(random.uniform(0.005, 0.05))
    raise AdminError("the admin repo kept changing; try again")


def edit(settings: Settings,
         change: Callable[[dict[str, bytes]], tuple[dict[str, bytes | None], str]],
         author: str) -> str:
    """One validated commit on the admin branch made by CHANGE (see _commit); for changes
    other modules compute, e.g. `gitserve mirror promote` rewriting mirror.master."""
    return _commit(settings, change, author)


def _make_commit(tree_id: bytes, parents: list[bytes], message: str, author: str) -> Commit:
    now = int(time.time())
    offset = -time.timezone if time.localtime(now).tm_isdst == 0 else -time.altzone
    c = Commit()
    c.tree = tree_id
    c.parents = parents
    c.author = _identity(author)
    c.committer = b"gitserve <>"
    c.author_time = c.commit_time = now
    c.author_timezone = c.commit_timezone = offset
    c.encoding = b"UTF-8"
    c.message = (message.rstrip("\n") + "\n").encode()
    return c


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
    commit = _make_commit(tree_id, [parent], message, author)
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
               f"Added by {_who(author)} with `gitserve admin add-key`.")
        return {path: (key.openssh() + "\n").encode()}, msg

    sha = _commit(settings, change, author)
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
               f"{lines}\n\nRemoved by {_who(author)} with `gitserve admin remove-key`.")
        upd: dict[str, bytes | None] = {e.path: None for e in mine}
        upd.update({p: None for p in extra})
        return upd, msg

    sha = _commit(settings, change, author)
    return list(removed), sha


def set_conf(settings: Settings, text: str, author: str) -> str | None:
    """Replace conf/gitolite.conf (validated with the included files beside it).
    Returns the new commit sha, or None when the text is unchanged."""
    if "\x00" in text:
        raise AdminError("conf contains a NUL byte")
    data = text.encode("utf-8")
    unchanged = False

    def change(files: dict[str, bytes]) -> tuple[dict[str, bytes | None], str]:
        nonlocal unchanged
        if files.get(MAIN_CONF) == data:
            unchanged = True
            raise _Unchanged()
        option_problems(_load_rules({**files, MAIN_CONF: data}), settings.hooks_dir)
        msg = (f"set-conf: replace {MAIN_CONF}\n\n"
               f"Set by {_who(author)} with `gitserve admin set-conf`.")
        return {MAIN_CONF: data}, msg

    try:
        return _commit(settings, change, author)
    except _Unchanged:
        return None


class _Unchanged(Exception):
    pass


def create_admin_repo(settings: Settings, files: dict[str, bytes], author: str, message: str) -> str:
    """Create the admin repo with FILES (conf/..., keydir/...) as its first commit
    (validated first); used by `gitserve init`. Returns the commit sha."""
    build(files)
    path = repos.create(settings, repos.ADMIN_REPO)
    repo = Repo(str(path))
    try:
        changes = []
        for p, data in sorted(files.items()):
            blob = Blob.from_string(data)
            repo.object_store.add_object(blob)
            changes.append((p.encode(), FILE_MODE, blob.id))
        tree_id = commit_tree_changes(repo.object_store, Tree(), changes)
        commit = _make_commit(tree_id, [], message, author)
        repo.object_store.add_object(commit)
        branch = ADMIN_BRANCH.encode()
        repo.refs.set_symbolic_ref(b"HEAD", branch)
        if not repo.refs.add_if_new(branch, commit.id, message=b"gitserve init"):
            raise AdminError("admin repository already has a commit")
    finally:
        repo.close()
    return commit.id.decode()


# --- moving an old home's admin branch to master -------------------------------------


def migrate_branch(settings: Settings) -> str | None:
    """Make `master` the admin branch of a home created when it was `main` (or any other).

    Gitolite's admin branch is master, so an existing gitolite-admin clone pushes there.
    The move loses no history: master takes the old branch's tip when it is new or behind
    it (a ref move), otherwise (someone pushed a master that was stored but never applied)
    one merge commit with both tips as parents and the old branch's tree, the rules in
    force. HEAD then names master and the old branch, now contained in master, is removed.
    Returns a line saying what was done, or None when there was nothing to do."""
    from dulwich.graph import can_fast_forward

    repo_path = settings.admin_repo
    branch, _ = _read_tip(repo_path)
    if branch == ADMIN_BRANCH:
        return None
    master = ADMIN_BRANCH.encode()
    with locked(settings.run_dir / "admin-branch.lock"):
        repo = Repo(str(repo_path))
        try:
            old = repo.refs.get_symrefs().get(b"HEAD")
            if old is None or old == master:
                return None
            old_sha = repo.refs.as_dict().get(old)
            master_sha = repo.refs.as_dict().get(master)
            if old_sha is None:
                repo.refs.set_symbolic_ref(b"HEAD", master)
                return f"gitolite-admin: HEAD now names master (it named {old.decode()}, which has no commit)"
            if master_sha is None or master_sha == old_sha or can_fast_forward(repo, master_sha, old_sha):
                new_sha, how = old_sha, "moved"
            else:
                merge = _make_commit(
                    repo[old_sha].tree, [master_sha, old_sha],
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
        finally:
            repo.close()
    _cache.pop(str(settings.home), None)
    name = old.decode().removeprefix("refs/heads/")
    audit.record(settings, user="gitserve", op="admin", repo=repos.ADMIN_REPO, ref=ADMIN_BRANCH,
                 old=(master_sha or b"0" * 40).decode(), new=new_sha.decode(), result="updated",
                 reason=f"admin branch {name} {how} into master")
    return (f"gitolite-admin: the admin branch is now master ({name} {how} into it at "
            f"{new_sha.decode()[:12]}; no history lost)")
