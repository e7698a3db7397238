"""Get the exact pushed commit onto the worker: a per-repo cache, then a clean checkout.

Each worker host keeps one bare cache repository per gitserve repo and fetches into it
incrementally (only the objects it lacks). A worker on the server host fetches straight
from the repository path; any other host fetches over SSH as the `:builder` identity,
which may read the hidden ref refs/gitserve/builds/ID (needed for gate builds, whose
commit is not on any branch yet).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from gitserve.errors import GitserveError
from gitserve.fsutil import locked

from .workersettings import CACHE_ENV, NO_LOCAL_ENV, WORKER_KEY_ENV, WorkerSettings  # noqa: F401
GIT_TIMEOUT = 300


class WorkspaceError(GitserveError):
    """The commit could not be fetched or checked out (one line, safe to show the pusher)."""


def cache_root() -> Path:
    """$GITSERVE_BUILD_CACHE, else HOME/cache/builds for a local worker, else ~/.cache/gitserve."""
    return WorkerSettings.from_env().cache_root


def work_root() -> Path:
    """Where build and deploy workspaces are made (see WorkerSettings.work_root)."""
    return WorkerSettings.from_env().work_root


def worker_key() -> Path | None:
    return WorkerSettings.from_env().ssh_key


def _git(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    # hermetic: no system or user git config applies to a checkout (Debian's git-lfs package
    # puts an lfs smudge filter into /etc/gitconfig, which would try the network; LFS files
    # are filled by fill_lfs from the server's store instead)
    full_env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_CONFIG_NOSYSTEM="1",
                    GIT_CONFIG_GLOBAL="/dev/null", GIT_LFS_SKIP_SMUDGE="1")
    full_env.pop("GIT_DIR", None)
    if env:
        full_env.update(env)
    try:
        res = subprocess.run(["git", *args], cwd=cwd, env=full_env, capture_output=True,
                             text=True, timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise WorkspaceError(f"git {args[0]} timed out") from exc
    if res.returncode != 0:
        msg = (res.stderr.strip().splitlines() or ["exit %d" % res.returncode])[-1]
        raise WorkspaceError(f"git {args[0]}: {msg}")
    return res.stdout


def _has_commit(cache: Path, sha: str) -> bool:
    res = subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=cache,
                         capture_output=True, stdin=subprocess.DEVNULL)
    return res.returncode == 0


def _ssh_command(key: Path | None, known_hosts: Path) -> str:
    parts = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
             "-o", f"UserKnownHostsFile={known_hosts}", "-o", "ConnectTimeout=15"]
    if key is not None:
        parts += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    return shlex.join(parts)




def local_objects(local_path: str) -> Path | None:
    """The server's object store, when this worker runs on the server host (fast path)."""
    if not local_path or WorkerSettings.from_env().no_local_fetch:
        return None
    local = Path(local_path)
    if (local / "objects").is_dir() and (local / "HEAD").exists():
        return local / "objects"
    return None


def update_cache(repo: str, sha: str, fetch_ref: str, clone_url: str) -> Path:
    """Make sure this host's cache of REPO has SHA (incremental fetch over SSH); returns its
    object directory."""
    root = cache_root()
    cache = root / f"{repo}.git"
    with locked(root / f"{repo}.lock"):
        if not (cache / "HEAD").exists():
            cache.mkdir(parents=True, exist_ok=True)
            _git(["init", "-q", "--bare", str(cache)])
        elif _has_commit(cache, sha):
            return cache / "objects"
        if not clone_url:
            raise WorkspaceError("no way to fetch the commit (no local repo, no clone URL)")
        env = {"GIT_SSH_COMMAND": _ssh_command(worker_key(), root / "known_hosts")}
        # refs/cache/last keeps what we have reachable, so the next fetch only brings new objects
        _git(["fetch", "-q", "--no-tags", clone_url, f"+{fetch_ref}:refs/cache/last"], cwd=cache, env=env)
    return cache / "objects"


def source_objects(repo: str, sha: str, fetch_ref: str, local_path: str, clone_url: str) -> Path:
    """Where SHA's objects are: the server repo itself (local worker) or this host's cache."""
    return local_objects(local_path) or update_cache(repo, sha, fetch_ref, clone_url)


def checkout(objects: Path, sha: str, dest: Path) -> None:
    """A clean working tree of SHA at DEST with a .git borrowing OBJECTS (nothing copied).

    The repository is laid out by hand and filled by one `git read-tree`: a build starts
    tens of milliseconds after its job, which a clone + checkout would triple."""
    if dest.exists():
        shutil.rmtree(dest)
    gitdir = dest / ".git"
    for sub in ("objects/info", "refs/heads", "refs/tags"):
        (gitdir / sub).mkdir(parents=True)
    (gitdir / "objects/info/alternates").write_text(f"{objects.resolve()}\n")
    (gitdir / "HEAD").write_text(f"{sha}\n")
    (gitdir / "config").write_text("[core]\n\trepositoryformatversion = 0\n\tbare = false\n")
    try:
        _git(["read-tree", "-u", "--reset", sha], cwd=dest)
    except WorkspaceError as exc:
        raise WorkspaceError(f"commit {sha[:12]} not available: {exc}") from None


def fill_lfs(dest: Path, sha: str, repo: str, local_path: str, clone_url: str) -> int:
    """Replace the LFS pointer files of SHA's tree in the work tree DEST with their contents
    (SPEC §11: builds see real files). A worker on the server host copies from HOME/lfs; any
    other host downloads the objects into its cache over the ssh it fetches git with (the
    pure SSH LFS protocol, as `:builder`), so no build needs git-lfs or network access of its
    own. Returns how many files were filled; WorkspaceError names a missing object."""
    from urllib.parse import urlsplit

    from gitserve.lfs import client, pointers
    from gitserve.lfs.store import LfsError, LfsStore, repo_root

    try:
        entries = pointers.in_tree(dest, sha)
    except subprocess.CalledProcessError as exc:
        raise WorkspaceError(f"listing LFS files failed: exit {exc.returncode}") from None
    if not entries:
        return 0
    try:
        if local_objects(local_path) is not None:
            # HOME/repositories/NAME.git -> HOME/lfs/NAME.git (NAME may hold '/')
            home = Path(local_path).parents[len(Path(repo).parts)]
            store = LfsStore(repo_root(home / "lfs", repo))
        else:
            url = urlsplit(clone_url)
            if url.scheme != "ssh" or not url.hostname:
                raise WorkspaceError("LFS files need an ssh clone URL to fetch from")
            root = cache_root()
            store = LfsStore(repo_root(root / "lfs", repo))
            argv = shlex.split(_ssh_command(worker_key(), root / "known_hosts"))
            if url.port:
                argv += ["-p", str(url.port)]
            argv.append(f"{url.username or 'git'}@{url.hostname}")
            with locked(root / f"{repo}.lfs.lock"):
                client.download(argv, repo, [(oid, size) for _, oid, size in entries], store)
        return client.fill_worktree(dest, entries, store)
    except LfsError as exc:
        raise WorkspaceError(exc.message) from None
