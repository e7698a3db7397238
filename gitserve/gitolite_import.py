"""Moving a Gitolite site over: `gitserve init --from-gitolite PATH [--repositories DIR] [--move]`.

What a Gitolite site is made of, and where each part goes:
- the admin repo (`~/repositories/gitolite-admin.git`): its history (every branch and tag)
  is fetched into gitserve's admin repo, Gitolite's `master` becoming ours, so existing
  gitolite-admin clones fetch and push as before. A plain copy would clobber it (its HEAD,
  branches and Gitolite's post-update hook are not gitserve's);
- `~/repositories/NAME.git`: copied (or moved) to HOME/repositories with everything Gitolite
  keeps inside a repo (`gl-creator`, `gl-perms`, `description`, git config) but Gitolite's
  hooks (`hooks/update -> ~/.gitolite/hooks/common/update`, repo-specific hooks, which are
  symlinks too) and its compiled per-repo rules (`gl-conf`); gitserve runs no hook in a repo;
- a gitolite-admin checkout given as PATH: its conf/ and keydir/ files are what goes live;
  if they differ from the admin repo's tip, one commit on top records the difference.
Nothing is written here until everything was read and validated, and the caller builds the
new home in a temporary directory, so a refused import leaves no half-made home.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from dulwich.objects import Commit
from dulwich.repo import Repo

from gitserve import adminrepo, gitolite_rc, repoconf, repos
from gitserve.errors import GitserveError
from gitserve.settings import Settings

log = logging.getLogger(__name__)

ADMIN_DIR = f"{repos.ADMIN_REPO}.git"
# files Gitolite writes into ~/.gitolite/conf when it compiles (not sources)
_COMPILED = ("-compiled.pm", "rule_info")
# what Gitolite leaves in a repo that gitserve must not carry: compiled rules
_GITOLITE_REPO_FILES = ("gl-conf",)


class GitoliteImportError(GitserveError, ValueError):
    """The Gitolite site cannot be imported (message is one line)."""


@dataclass
class Source:
    """Where each part of a Gitolite site comes from (nothing read into memory but conf/keydir)."""

    files: dict[str, bytes]  # conf/ and keydir/ to go live
    history: Path | None = None  # a git dir whose admin history is imported
    tip: bytes | None = None  # the commit that becomes master (before `files` are laid on top)
    all_refs: bool = False  # bring every branch and tag of HISTORY (a server's admin repo)
    repositories: Path | None = None  # directory of NAME.git to bring
    described: str = ""
    notes: list[str] = field(default_factory=list)
    # a hosting user's home: what its rc and host decide (None for a checkout or repo dir)
    site: gitolite_rc.SiteSettings | None = None
    hostname: str = ""  # the rc's HOSTNAME (a mirrored site): becomes [server] hostname


def rc_hostname(rc_path: Path) -> str:
    """HOSTNAME from a Gitolite rc (mirroring; `%HOSTNAME` in the conf), or ""."""
    try:
        text = rc_path.read_text(errors="replace")
    except OSError:
        return ""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    found = re.search(r"\bHOSTNAME\s*=>\s*(['\"])([A-Za-z0-9][A-Za-z0-9._-]*)\1", body)
    return found.group(2) if found else ""


def rc_warnings(rc_path: Path) -> list[str]:
    """What a Gitolite site's ~/.gitolite.rc turns on that the import cannot carry over."""
    try:
        return gitolite_rc.rc_warnings(rc_path)
    except gitolite_rc.RcError as exc:
        return [str(exc)]


def _is_git_dir(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir()


def _tip_of(git_dir: Path, prefer_master: bool) -> bytes | None:
    repo = Repo(str(git_dir))
    try:
        refs = repo.get_refs()
        sha = refs.get(b"refs/heads/master") if prefer_master else None
        if sha is None:
            sha = refs.get(b"HEAD")
        if sha is None:
            return None
        obj = repo[sha]
        return sha if isinstance(obj, Commit) else None
    finally:
        repo.close()


def _files_at(git_dir: Path, sha: bytes) -> dict[str, bytes]:
    repo = Repo(str(git_dir))
    try:
        commit = repo[sha]
        assert isinstance(commit, Commit)
        return adminrepo.tree_files(repo, commit.tree)
    finally:
        repo.close()


def read_checkout(path: Path) -> dict[str, bytes]:
    """conf/ and keydir/ files of a gitolite-admin work tree (Gitolite's compiled files left out)."""
    files: dict[str, bytes] = {}
    for top in (adminrepo.CONF_DIR, adminrepo.KEYDIR):
        root = path / top
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for d in dirnames:
                if os.path.islink(os.path.join(dirpath, d)):
                    rel = os.path.relpath(os.path.join(dirpath, d), path)
                    raise adminrepo.AdminError(f"{rel}: symlinks are not imported")
            for name in sorted(filenames):
                if top == adminrepo.CONF_DIR and name.endswith(_COMPILED):
                    continue
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                if os.path.islink(full):
                    raise adminrepo.AdminError(f"{rel}: symlinks are not imported")
                with open(full, "rb") as f:
                    files[rel] = f.read()
    return files


def locate(path: Path | None, repositories: Path | None) -> Source:
    """Work out what to import from PATH (a Gitolite hosting user's home, a gitolite-admin
    checkout or bare repo) and/or a repositories directory; raises GitoliteImportError."""
    repo_dir = repositories.expanduser() if repositories is not None else None
    if repo_dir is not None and not repo_dir.is_dir():
        raise GitoliteImportError(f"{repo_dir}: no such directory")
    src = Source(files={})
    if path is not None:
        path = path.expanduser()
        if not path.exists():
            raise GitoliteImportError(f"{path}: no such directory")
        if (path / ".gitolite").is_dir() and (path / "repositories").is_dir():
            # a hosting user's home: the admin repo on the server is the source of truth
            repo_dir = repo_dir or path / "repositories"
            src.described = f"Gitolite site {path}"
            try:
                src.site = gitolite_rc.read_site(path)
            except gitolite_rc.RcError as exc:
                raise GitoliteImportError(str(exc)) from None
            src.notes += [f"warning: {w}" for w in src.site.notes]
            src.hostname = rc_hostname(path / ".gitolite.rc")
        elif _is_git_dir(path):
            src.history, src.tip = path, _tip_of(path, prefer_master=True)
            if src.tip is None:
                raise GitoliteImportError(f"{path}: repository has no commit at master or HEAD")
            src.files = _files_at(path, src.tip)
            src.all_refs = True
            src.described = f"gitolite-admin repository {path}"
        elif (path / "conf").is_dir():
            src.files = read_checkout(path)
            if (path / ".git").is_dir():
                tip = _tip_of(path / ".git", prefer_master=False)
                if tip is not None:
                    src.history, src.tip = path / ".git", tip
            src.described = f"gitolite-admin checkout {path}"
        else:
            raise GitoliteImportError(f"{path}: not a Gitolite home (~/.gitolite and ~/repositories), "
                               "gitolite-admin checkout or repository")
    if repo_dir is not None:
        src.repositories = repo_dir
        server_admin = repo_dir / ADMIN_DIR
        own_checkout = path is not None and src.history == path / ".git"
        if _is_git_dir(server_admin) and (src.history is None or own_checkout):
            # the server's admin repo is the history every admin clone shares
            tip = _tip_of(server_admin, prefer_master=True)
            if tip is not None:
                src.history, src.tip, src.all_refs = server_admin, tip, True
                if not src.files:
                    src.files = _files_at(server_admin, tip)
        if not src.described:
            src.described = f"Gitolite repositories {repo_dir}"
    if not src.files:
        raise GitoliteImportError("nothing to import: no conf/gitolite.conf found "
                           f"(looked in {path or repo_dir})")
    return src


# --- the admin repo ----------------------------------------------------------------------


def import_admin_history(settings: Settings, src: Source, author: str, message: str) -> str:
    """Create HOME's admin repo from SRC: its history on master (every branch and tag of a
    server's admin repo), plus one commit when SRC.files differ from that tip. Returns the
    master sha. The files were validated by the caller."""
    assert src.history is not None and src.tip is not None
    path = repos.create(settings, repos.ADMIN_REPO)
    target = Repo(str(path))
    source = Repo(str(src.history))
    try:
        wanted: dict[bytes, bytes] = {adminrepo.ADMIN_BRANCH.encode(): src.tip}
        if src.all_refs:
            for ref, sha in source.get_refs().items():
                if ref.startswith((b"refs/heads/", b"refs/tags/")) and ref != adminrepo.ADMIN_BRANCH.encode():
                    wanted[ref] = sha
        source.fetch(target, lambda refs, depth=None: sorted(set(wanted.values())))
        tip = src.tip
        tip_commit = target[tip]
        assert isinstance(tip_commit, Commit)
        current = adminrepo.tree_files(target, tip_commit.tree)
        if current != src.files:
            tip = adminrepo.commit_files(target, tip, current, src.files, author, message)
        target.refs.set_symbolic_ref(b"HEAD", adminrepo.ADMIN_BRANCH.encode())
        for ref, sha in wanted.items():
            target.refs[ref] = tip if ref == adminrepo.ADMIN_BRANCH.encode() else sha
    finally:
        source.close()
        target.close()
    return tip.decode()


# --- the repositories --------------------------------------------------------------------


@dataclass
class RepoPlan:
    name: str
    source: Path


def plan_repositories(src_dir: Path) -> tuple[list[RepoPlan], list[str]]:
    """Every NAME.git under SRC_DIR but gitolite-admin; (plans, warnings for what is skipped)."""
    plans: list[RepoPlan] = []
    warnings: list[str] = []
    for root, dirs, _files in os.walk(src_dir):
        rel = os.path.relpath(root, src_dir)
        keep = []
        for d in sorted(dirs):
            full = Path(root) / d
            if not d.endswith(".git"):
                if full.is_symlink():
                    warnings.append(f"{full}: symlinked directory skipped")
                else:
                    keep.append(d)
                continue
            name = d[:-4] if rel == "." else f"{rel}/{d[:-4]}"
            if name == repos.ADMIN_REPO:
                continue
            if full.is_symlink():
                warnings.append(f"{name}: symlinked repository skipped ({full})")
                continue
            if not _is_git_dir(full):
                warnings.append(f"{name}: not a git repository, skipped")
                continue
            try:
                repos.check_name(name)
            except repos.RepoError as exc:
                warnings.append(f"{name}: skipped: {exc}")
                continue
            plans.append(RepoPlan(name, full))
        dirs[:] = keep
    return plans, warnings


def _is_gitolite_hook(path: Path) -> bool:
    """Gitolite's hooks and its repo-specific hooks are symlinks into ~/.gitolite or its
    install; a plain script that names gitolite is one of its too."""
    if path.is_symlink():
        return True
    try:
        with open(path, "rb") as f:
            return b"gitolite" in f.read(65536).lower()
    except OSError:
        return False


def clean_repo(path: Path, name: str) -> list[str]:
    """Drop Gitolite's hooks and compiled rules from the copied repo at PATH; returns notes
    about hooks kept (gitserve never runs a repo's hooks; `option hook.post-receive` does)."""
    notes: list[str] = []
    hooks = path / "hooks"
    if hooks.is_dir() and not hooks.is_symlink():
        for entry in sorted(hooks.iterdir()):
            if entry.name.endswith(".sample"):
                continue
            if _is_gitolite_hook(entry):
                entry.unlink()
            elif entry.is_file():
                notes.append(f"{name}: hooks/{entry.name} is not run by gitserve "
                             "(see `option hook.post-receive` in the README)")
    elif hooks.is_symlink():
        hooks.unlink()
        hooks.mkdir()
    for f in _GITOLITE_REPO_FILES:
        p = path / f
        if p.is_file() or p.is_symlink():
            p.unlink()
    return notes + _drop_program_keys(path, name)


def _drop_program_keys(path: Path, name: str) -> list[str]:
    """Config keys that make git run a program or read another file (Gitolite writes any key
    GIT_CONFIG_KEYS allows; gitserve never keeps those): removed from the copied repo's config."""
    config = path / "config"
    if not config.is_file():
        return []
    listed = subprocess.run(["git", "config", "--file", str(config), "--name-only", "--list"],
                            capture_output=True, text=True, timeout=60, check=False)
    dropped = sorted({k for k in listed.stdout.split() if repoconf.is_dangerous(k)})
    for key in dropped:
        subprocess.run(["git", "config", "--file", str(config), "--unset-all", key],
                       capture_output=True, timeout=60, check=False)
    return [f"{name}: git config {key} removed (it runs programs or reads files)"
            for key in dropped]


class RepoMover:
    """Copies (or moves) repositories into a home being built; `undo()` puts moved ones back.

    Gitolite's files are only cleaned (`clean()`) once every repo is in, so an undo after a
    failure hands back repositories Gitolite can still serve."""

    def __init__(self, settings: Settings, move: bool, source_root: Path) -> None:
        self.settings = settings
        self.move = move
        self.source_root = source_root
        self.moved: list[tuple[Path, Path]] = []  # renamed: (source, dest)
        self.copied_from: list[Path] = []  # --move across file systems: delete when done
        self.brought: list[tuple[str, Path]] = []

    def bring(self, plan: RepoPlan) -> None:
        dest = self.settings.repos_dir / f"{plan.name}.git"
        if dest.exists():
            raise GitoliteImportError(f"{plan.name}: already exists in the new home")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self.move:
            try:
                os.rename(plan.source, dest)
                self.moved.append((plan.source, dest))
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise GitoliteImportError(f"{plan.name}: cannot move {plan.source}: "
                                       f"{exc.strerror}") from None
                shutil.copytree(plan.source, dest, symlinks=True)  # another file system
                self.copied_from.append(plan.source)
        else:
            shutil.copytree(plan.source, dest, symlinks=True)
        self.brought.append((plan.name, dest))

    def clean(self) -> list[str]:
        notes: list[str] = []
        for name, dest in self.brought:
            notes += clean_repo(dest, name)
        return notes

    def finish(self) -> None:
        """After the new home is in place: drop the sources --move had to copy, and the
        directories (`wild/alice/`) that --move left empty."""
        for src in self.copied_from:
            shutil.rmtree(src, ignore_errors=True)
        root = self.source_root.resolve()
        for src in [s for s, _ in self.moved] + self.copied_from:
            parent = src.parent.resolve()
            while parent != root and root in parent.parents:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

    def undo(self) -> None:
        for src, dest in reversed(self.moved):
            try:
                os.rename(dest, src)
            except OSError as exc:
                log.error("could not move %s back to %s: %s", dest, src, exc)
        self.moved.clear()


# --- LOCAL_CODE: the site's own hooks, VREFs and commands -----------------------------------


@dataclass
class LocalCode:
    """Files of Gitolite's LOCAL_CODE to copy into the new home, as (source, path under HOME)."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# LOCAL_CODE subdirectory -> where gitserve looks for the same thing
_LOCAL_DIRS = (("hooks/repo-specific", "hooks"), ("VREF", "vrefs"), ("commands", "commands"))


def _programs(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not name.startswith(".") and p.is_file() and os.access(p, os.X_OK):
                out.append(p)
    return out


def plan_local_code(local: Path) -> LocalCode:
    """What Gitolite ran from LOCAL_CODE: hooks/repo-specific/NAME (`option hook.*`) go to
    HOME/hooks/NAME, VREF/NAME to HOME/vrefs/NAME, commands/NAME to HOME/commands/NAME (run
    when `[server] commands` names them, as the rc's ENABLE did); the rest is named in a note."""
    plan = LocalCode()
    if not local.is_dir():
        plan.notes.append(f"LOCAL_CODE {local}: no such directory, nothing copied")
        return plan
    for sub, dest in _LOCAL_DIRS:
        for p in _programs(local / sub):
            plan.files.append((p, f"{dest}/{p.relative_to(local / sub).as_posix()}"))
    for sub in ("hooks/common", "triggers", "lib"):
        found = [p.relative_to(local).as_posix() for p in _programs(local / sub)] \
            if (local / sub).is_dir() else []
        if sub == "lib" and (local / sub).is_dir():
            found = [f"{sub}/"]
        if found:
            plan.notes.append(f"LOCAL_CODE {local}: not carried over (gitserve has no place to "
                              f"run them): {', '.join(found)}")
    return plan


def install_local_code(home: Path, plan: LocalCode) -> None:
    for source, rel in plan.files:
        dest = home / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest, follow_symlinks=True)
        dest.chmod(0o755)


def copy_host_keys(sshd_dir: Path, dest: Path) -> list[str]:
    """The sshd's host keys (ed25519, ecdsa, rsa) into DEST, so clients that knew the host see
    the same keys from gitserve's server; returns the key file names copied."""
    copied = []
    for kind in ("ed25519", "ecdsa", "rsa"):
        src = sshd_dir / f"ssh_host_{kind}_key"
        if not src.is_file():
            continue
        try:
            data = src.read_bytes()
        except OSError as exc:
            raise GitoliteImportError(f"{src}: {exc.strerror} (run the import as root to take "
                                      "over the sshd's host keys)") from None
        fd = os.open(dest / src.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        pub = sshd_dir / f"{src.name}.pub"
        if pub.is_file():
            shutil.copyfile(pub, dest / pub.name)
        copied.append(src.name)
    if not copied:
        raise GitoliteImportError(f"{sshd_dir}: no ssh_host_*_key to take over")
    return copied
