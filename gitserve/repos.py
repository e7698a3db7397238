"""Repository names, paths and creation, and the metadata Gitolite keeps inside a repo.

A repo name arrives from an untrusted SSH command line, so every path to a repository
goes through `parse_repo_arg`/`check_name` and `path`, which together guarantee the result
is a directory under HOME/repositories and nowhere else (no `..`, no symlink escapes).
Wild-repo metadata (`gl-creator`, `gl-perms`) and `description` are stored exactly as
Gitolite stores them so a Gitolite `repositories/` directory moves over unchanged.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from dulwich.config import ConfigFile
from dulwich.errors import NotGitRepository
from dulwich.repo import Repo

from gitserve.acl.can import repo_exists
from gitserve.errors import GitserveError
from gitserve import acl
from gitserve.acl import wild
from gitserve.fsutil import atomic_write
from gitserve.names import REPONAME_PATT, USERNAME_PATT
from gitserve.settings import Settings

MAX_NAME = 255
# Roles a wild repo's owner may grant with `perms` (Gitolite's default %ROLES).
ROLES = acl.patterns.ROLES
ADMIN_REPO = "gitolite-admin"
# `writable ... off`: in the server home (all repos) or in a repo (Gitolite's name)
DOWN_FILE = ".gitolite.down"
DEFAULT_DESCRIPTION = "Unnamed repository; edit this file 'description' to name the repository.\n"


class RepoError(GitserveError, ValueError):
    """A repository name or path that must be refused (message is one line)."""


def check_name(name: str) -> str:
    """Validate a bare repo name (no quotes, no `.git`); return it."""
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise RepoError("invalid repo name: control characters are not allowed")
    if not name:
        raise RepoError("invalid repo name: ''")
    if len(name) > MAX_NAME:
        raise RepoError(f"invalid repo name: longer than {MAX_NAME} characters")
    if ".." in name:
        raise RepoError(f"'{name}' contains '..'")
    if not REPONAME_PATT.match(name):
        raise RepoError(f"invalid repo name: '{name}'")
    parts = name.split("/")
    if any(p in ("", ".") for p in parts):
        raise RepoError(f"invalid repo name: '{name}'")
    # `a.git/b` would live inside repository `a`'s git directory
    if any(p.endswith(".git") for p in parts[:-1]) or name.endswith(".git"):
        raise RepoError(f"invalid repo name: '{name}'")
    return name


def parse_repo_arg(arg: str) -> str:
    """Repo name from the path a git client sends: `'/name.git'`, `name`, `name.git`,
    `/name`, `name/` all give `name` (Gitolite's parse_soc clean-up); raise RepoError."""
    if "\x00" in arg:
        raise RepoError("invalid repo name: NUL byte")
    raw = arg.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1]
    if raw.startswith("~/"):
        raw = raw[2:]
    if raw.startswith("/"):
        raw = raw[1:]
    if raw.endswith("/"):
        raw = raw[:-1]
    if raw.endswith(".git"):
        raw = raw[:-4]
    return check_name(raw)


def path(settings: Settings, name: str) -> Path:
    """Path of repository NAME; refuses names and symlinks that lead outside HOME/repositories."""
    check_name(name)
    base = settings.repos_dir.resolve()
    p = base / f"{name}.git"
    real = Path(os.path.realpath(p))
    if real != base and base not in real.parents:
        raise RepoError(f"repository '{name}' resolves outside the repositories directory")
    return p


def exists(settings: Settings, name: str) -> bool:
    return repo_exists(path(settings, name))


def initialized_line(settings: Settings, name: str) -> str:
    """What `git init` (and so Gitolite) tells whoever caused repo NAME to be created."""
    return f"Initialized empty Git repository in {path(settings, name)}/"


def create(settings: Settings, name: str, creator: str | None = None) -> Path:
    """Create bare repository NAME (HEAD -> refs/heads/<default_branch>; master for gitolite-admin).

    CREATOR is written to gl-creator for wild repos (repos named in the conf have none).
    The repo is built in a temporary directory and renamed into place, so a crash never
    leaves a half-made repository and two racing creators cannot both win.
    """
    final = path(settings, name)
    if creator is not None and not USERNAME_PATT.match(creator):
        raise RepoError(f"invalid creator name: '{creator}'")
    if final.exists():
        raise RepoError(f"repository '{name}' already exists")
    final.parent.mkdir(parents=True, exist_ok=True)
    # re-check after creating parents: a parent could be a symlink planted meanwhile
    path(settings, name)
    tmp = Path(tempfile.mkdtemp(prefix=".creating-", dir=settings.repos_dir))
    try:
        repo = Repo.init_bare(str(tmp))
        # gitolite-admin's branch is Gitolite's `master` (SPEC §2), whatever default_branch says
        branch = "master" if name == ADMIN_REPO else settings.server.default_branch
        repo.refs.set_symbolic_ref(b"HEAD", f"refs/heads/{branch}".encode())
        repo.close()
        (tmp / "description").write_text(DEFAULT_DESCRIPTION)
        if creator is not None:
            wild.write_creator(tmp, creator)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            raise RepoError(f"repository '{name}' already exists") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# --- wild-repo metadata (the access engine's gl-creator/gl-perms helpers) ------------


def wild_info(settings: Settings, name: str) -> "acl.WildInfo | None":
    """Creator and roles of a wild repo, or None for repos named in the conf."""
    return wild.read_wild(path(settings, name))


def creator(settings: Settings, name: str) -> str | None:
    info = wild_info(settings, name)
    return info.creator.strip() or None if info else None


def read_perms(settings: Settings, name: str) -> dict[str, list[str]]:
    info = wild_info(settings, name)
    return info.roles if info else {}


def write_perms(settings: Settings, name: str, roles: dict[str, list[str]]) -> None:
    """Replace gl-perms atomically (validated first, as Gitolite's `perms` validates)."""
    try:
        wild.write_perms(path(settings, name), roles)
    except ValueError as exc:
        raise RepoError(str(exc)) from None


def description(settings: Settings, name: str) -> str:
    try:
        text = (path(settings, name) / "description").read_text()
    except FileNotFoundError:
        return ""
    return "" if text == DEFAULT_DESCRIPTION else text.strip()


def gitweb_description(settings: Settings, name: str) -> str:
    """What Gitolite's `info -ld` shows: gitweb.description from the repo's config, else the
    `description` file as it is (git's "Unnamed repository..." placeholder included)."""
    try:
        config = ConfigFile.from_path(str(path(settings, name) / "config"))
        value = config.get((b"gitweb",), b"description")
        if value:
            return value.decode("utf-8", "replace")
    except (OSError, KeyError, ValueError):
        pass
    try:
        return (path(settings, name) / "description").read_text().rstrip("\n")
    except OSError:
        return ""


def set_description(settings: Settings, name: str, text: str) -> None:
    if any(ord(c) < 32 for c in text):
        raise RepoError("description must be one line of text")
    atomic_write(path(settings, name) / "description", text.strip() + "\n")


# --- listing and HEAD ----------------------------------------------------------------


def list_names(settings: Settings) -> list[str]:
    """Every repository under HOME/repositories (names without .git), sorted."""
    base = settings.repos_dir
    found: list[str] = []
    if not base.is_dir():
        return found
    for root, dirs, _files in os.walk(base):
        rel = os.path.relpath(root, base)
        keep = []
        for d in sorted(dirs):
            if d.startswith("."):
                continue
            if d.endswith(".git"):
                name = d[:-4] if rel == "." else f"{rel}/{d[:-4]}"
                try:
                    path(settings, name)  # skips bad names and symlinks leading outside
                except RepoError:
                    continue
                found.append(name)
            else:
                keep.append(d)
        dirs[:] = keep  # never descend into a repository
    return sorted(found)


def down_message(settings: Settings, name: str) -> str | None:
    """Why writes to repo NAME are disabled (`writable ... off`), or None if they are not."""
    for f in (settings.home / DOWN_FILE, path(settings, name) / DOWN_FILE):
        try:
            text = f.read_text()
        except (FileNotFoundError, NotADirectoryError):
            continue
        return text if text else "sorry, writes are currently disabled (no more info available)\n"
    return None


def head_after_push(repo_path: Path, created_refs: Iterable[str]) -> str | None:
    """SPEC §4 HEAD rule, called after a push with the refs it created, in push order.

    If HEAD names a branch that does not exist and every branch in the repo was created by
    this push (its first push), point HEAD at the first branch pushed so a plain
    `git clone` checks out the pushed work. Returns the new HEAD target, or None.
    """
    repo = Repo(str(repo_path))
    try:
        target = repo.refs.get_symrefs().get(b"HEAD")
        if target is None or target in repo.refs:
            return None
        branches = [r for r in created_refs if r.startswith("refs/heads/")]
        existing = {r.decode() for r in repo.refs.keys(base=b"refs/heads/")}
        existing = {f"refs/heads/{r}" for r in existing}
        present = [b for b in branches if b in existing]
        if not present or not existing <= set(branches):
            return None
        repo.refs.set_symbolic_ref(b"HEAD", present[0].encode())
        return present[0]
    finally:
        repo.close()


def default_branch(repo_path: Path) -> str | None:
    """The ref the repo's HEAD names (its default branch), or None for a detached HEAD or
    a repository that is not there."""
    try:
        repo = Repo(str(repo_path))
    except (NotGitRepository, OSError):
        return None
    try:
        target = repo.refs.get_symrefs().get(b"HEAD")
        return target.decode("utf-8", "surrogateescape") if target else None
    finally:
        repo.close()


# --- the branch a site deploys (issue 21, finding 3) --------------------------------------
DEPLOY_REF_FILE = "gitserve-deploy-ref"


def pin_deploy_ref(settings: Settings, repo_path: Path) -> str:
    """Fix the branch a site repo deploys when no `deploy.ref` names one, at the moment the
    conf makes it a site (repoconf.apply): the server's default branch if the repo has it or
    has no branch yet, else what HEAD names then (a Gitolite import's master). A writer who
    later moves HEAD (the first push of a dev/ branch, symbolic-ref) moves nothing that
    deploys. Returns the pinned ref; an existing pin is kept."""
    pin = repo_path / DEPLOY_REF_FILE
    try:
        return pin.read_text().strip()
    except FileNotFoundError:
        pass
    wanted = f"refs/heads/{settings.server.default_branch}"
    try:
        repo = Repo(str(repo_path))
    except (NotGitRepository, OSError):
        return wanted
    try:
        branches = list(repo.refs.keys(base=b"refs/heads/"))
        head = repo.refs.get_symrefs().get(b"HEAD")
        ref = wanted
        if branches and wanted.encode() not in repo.refs and head is not None:
            ref = head.decode("utf-8", "surrogateescape")
    finally:
        repo.close()
    atomic_write(pin, ref + "\n")
    return ref


def unpin_deploy_ref(repo_path: Path) -> None:
    try:
        (repo_path / DEPLOY_REF_FILE).unlink()
    except FileNotFoundError:
        pass


def deploy_default(settings: Settings, repo_path: Path) -> str:
    """The ref a site deploys when `deploy.ref` is not set: the pinned one, else the server's
    default branch; never what HEAD names now."""
    try:
        pinned = (repo_path / DEPLOY_REF_FILE).read_text().strip()
    except OSError:
        pinned = ""
    return pinned or f"refs/heads/{settings.server.default_branch}"
