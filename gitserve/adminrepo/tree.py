"""An admin tree (conf/ and keydir/ at one commit) turned into rules and keys, or refused.

Pure: reads objects, writes nothing. The read model (state.py), the writer (writer.py) and
receive-pack's validation of a push to master all judge a tree with this one code.
"""

from __future__ import annotations

import functools
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dulwich.objects import Commit
from dulwich.repo import Repo

from gitserve import authkeys, keys
from gitserve.errors import GitserveError

if TYPE_CHECKING:
    from gitserve.acl import Rules

CONF_DIR = "conf"
KEYDIR = "keydir"
MAIN_CONF = "conf/gitolite.conf"
# The branch whose tip is in force, as in Gitolite; pushes to other branches are only stored.
ADMIN_BRANCH = "refs/heads/master"
BUILDER = authkeys.BUILDER  # internal identity of HOME/worker_key (no keydir name can produce it)
MAX_FILE = 4 * 1024 * 1024  # a conf or key file bigger than this is a mistake
# Gitolite only warns about these and carries on without the line; a conf that does not
# parse is refused here instead (SPEC §2), so nobody loses access to a typo.
FATAL_WARNINGS = ("syntax error, ignoring",)
# A missing include is only a warning, as in Gitolite (the push goes through with `remote:
# WARNING: ...`), unless what is left would lock everybody out of the admin repo.
LOCKOUT_WARNINGS = ("included file not found",)


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


# Blob contents by sha (content-addressed, so shared by every repo and commit): a new admin
# tip with 5000 keys re-reads only the files that changed.
_blobs: dict[bytes, bytes] = {}
BLOB_CACHE_ENTRIES = 50000


def clear_caches() -> None:
    """Forget remembered blobs and parsed keys (benchmarks measure a cold load)."""
    _blobs.clear()
    _parse_key_file.cache_clear()


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
    """The keys of KEYDIR in FILES (one entry per distinct key) and warnings; a key two
    users claim, or a key file that does not parse, is refused with its path."""
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


_HOSTNAME_WORD = re.compile(r"%HOSTNAME\b")


def load_rules(files: dict[str, bytes], hostname: str = "", refex_expr: bool = False) -> Rules:
    """The compiled conf of FILES; a conf that does not parse is refused with file:line.
    With HOSTNAME (`[server] hostname`), the word `%HOSTNAME` in the conf is this server's
    name, as Gitolite substitutes its rc HOSTNAME (mirrors: `include "%HOSTNAME.conf"`).
    REFEX_EXPR: `[server] refex_expr` (Gitolite's ENABLE 'refex-expr')."""
    from gitserve import acl

    if MAIN_CONF not in files:
        raise AdminError(f"{MAIN_CONF}: missing")
    conf: dict[str, str] = {}
    for p, data in files.items():
        if p.startswith(CONF_DIR + "/"):
            if len(data) > MAX_FILE:
                raise AdminError(f"{p}: file too large")
            text = data.decode("utf-8", errors="surrogateescape")
            if hostname:
                text = _HOSTNAME_WORD.sub(hostname, text)
            conf[p[len(CONF_DIR) + 1 :]] = text
    try:
        rules = acl.load_files(conf, refex_expr=refex_expr)
    except acl.ConfError as exc:
        raise AdminError(_one_line(str(exc))) from None
    for w in rules.warnings:
        if any(marker in w for marker in FATAL_WARNINGS):
            raise AdminError(_one_line(w.replace(", ignoring:", ":")))
    for w in rules.warnings:
        if any(marker in w for marker in LOCKOUT_WARNINGS) and not _someone_administers(rules):
            raise AdminError(_one_line(w) + " (and nobody could push to gitolite-admin then)")
    return rules


def _someone_administers(rules: Rules) -> bool:
    """Does any user the conf names keep write access to gitolite-admin's master?"""
    users = {"@all-probe"}  # stands for anyone, for `RW+ = @all`
    for per_user in rules.compiled.repos.values():
        users.update(u for u in per_user if not u.startswith("@"))
    for members in rules.compiled.groups.values():
        users.update(m for m in members if not m.startswith("@"))
    return any(rules.check("gitolite-admin", u, "W", ADMIN_BRANCH).allowed for u in sorted(users))


def _one_line(msg: str) -> str:
    return " ".join(msg.split())


def build(files: dict[str, bytes], hostname: str = "",
          refex_expr: bool = False) -> tuple[Rules, list[KeyEntry], list[str]]:
    """(rules, key entries, warnings) for an admin tree given as {path: content};
    raises AdminError with the first problem (file:line for conf, keydir/x.pub: reason)."""
    rules = load_rules(files, hostname, refex_expr)
    entries, warnings = keydir_entries(files)
    return rules, entries, warnings


def option_problems(rules: Rules, hooks_dir: Path | None) -> None:
    """Refuse gitserve options with unknown names or bad values (gitserve.options), file:line."""
    from gitserve import options

    found = options.problems(rules, options.Env(hooks_dir))
    if found:
        raise AdminError(found[0] + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))


def validate_commit(repo_path: Path | str | Repo, sha: str | bytes,
                    hooks_dir: Path | None = None, hostname: str = "",
                    refex_expr: bool = False) -> str | None:
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
            return f"commit {sha!s} not found"
        if not isinstance(obj, Commit):
            return f"{sha!s} is not a commit"
        rules, _entries, _warnings = build(tree_files(repo, obj.tree), hostname, refex_expr)
        option_problems(rules, hooks_dir)
    except AdminError as exc:
        return str(exc)
    finally:
        if own:
            repo.close()
    return None


def not_applied_note(refs: list[str]) -> str:
    """The one line a pusher sees for gitolite-admin refs other than master (stored only)."""
    names = ", ".join(r.removeprefix("refs/heads/") for r in refs)
    return (f"NOTE: gitolite-admin: {names} stored but not applied; "
            "only master is applied (git push origin HEAD:master)")
