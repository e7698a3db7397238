"""The sandbox that build scripts, the artifact packing and `deploy.post` run in (SPEC §6).

A pushed script is hostile until proven otherwise: it must not read the server home
(secrets.key, host keys, worker_key, every repository), the server user's ~/.ssh, another
build's workspace, nor leave a daemon behind that tampers with a later build. Each run gets,
through bubblewrap (`bwrap`, Debian's package of the tool Flatpak uses):

- a new PID namespace: when the script ends, times out or is cancelled, its init is killed
  and the kernel kills everything inside (setsid, nohup, double fork included); `reap()`
  waits until that happened, so nothing a build started can touch its output afterwards;
- a new mount namespace whose root is a tmpfs with the host's top-level directories bound
  read-only, except: /home, /root, /tmp, /var/tmp, /run (its sockets: docker, dbus...; only
  the resolver's directory is bound back when /etc/resolv.conf points there), the server home,
  the server user's home, the work root and the build cache are empty tmpfs (or /dev/null);
  the run's own workspace is bound at /build/src (read-write), its HOME at /build/home and its
  /tmp is a directory of the workspace (private, on disk); /proc and /dev are new;
- never uid 0: a root server runs bwrap privileged (no user namespace needed) and the script
  through `setpriv` as `[builds] sandbox_user` with no capabilities, no groups, no_new_privs
  and a seccomp filter refusing new user namespaces; any other server runs bwrap in a user
  namespace as itself (nested user namespaces disabled, so the mounts above stay locked);
- an environment built from scratch: PATH, HOME, LANG plus what the caller passes.

- its own network namespace (gitserve.sandbox_net): `outbound` through a user-mode stack that
  refuses the host's loopback, `none` (loopback only), or `host` (a server setting only);
- limits (gitserve.sandbox_limits): rlimits set by prlimit after the drop to the build
  uid, the process tree watched by the runner, the workspace on its own tmpfs
  (gitserve.sandbox_disk);
- as root, each repo's builds run as their own uid (`[builds] uid_range`, the uid chosen by
  the caller: buildqueue/uids.py), so one repo's processes cannot signal another's and the
  process limit is per repo.

Not isolated: the kernel, world-readable files outside the hidden paths. Where bwrap
cannot run, `[builds] allow_unsandboxed = true` lets builds run without it (still never
as root, env from scratch); otherwise they are refused.
"""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable

from . import sandbox_net
from .errors import GitserveError
from .sandbox_limits import Limits

INSIDE = Path("/build")             # where a run sees its workspace
INSIDE_SRC = INSIDE / "src"
INSIDE_HOME = INSIDE / "home"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# top-level directories never bound into the sandbox (replaced by empty or new ones)
_NOT_BOUND = {"proc", "dev", "tmp", "home", "root", "sys", "lost+found"}
# /run too: its sockets (docker.sock, dbus...) are reachable by uid and group, not by path
_EMPTY_DIRS = ("/home", "/root", "/var/tmp", "/run")
REAP_TIMEOUT = 10.0


class SandboxError(GitserveError):
    """No sandbox here and unsandboxed runs are not allowed (one line, safe to show)."""


def parse_uid_range(value: str) -> tuple[int, int] | None:
    """'200000-265535' -> (200000, 265535); '' -> None (every repo runs as sandbox_user)."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        low, high = (int(x) for x in value.split("-", 1))
    except ValueError:
        raise SandboxError(f"[builds] uid_range {value!r} is not LOW-HIGH") from None
    if low <= 0 or high < low or high >= 2**32 - 1:
        raise SandboxError(f"[builds] uid_range {value!r}: need 0 < LOW <= HIGH")
    return low, high


@dataclass(frozen=True)
class Policy:
    """How untrusted scripts run: [builds] sandbox, sandbox_user, allow_unsandboxed, network,
    the limits, uid_range; `uid` is the repo's own uid once the worker picked it."""

    enabled: bool = True
    allow_unsandboxed: bool = False
    user: str = "nobody"
    network: str = ""  # "" = sandbox_net.default_mode()
    limits: Limits = field(default_factory=Limits)
    uid_range: str = ""
    uid: int | None = None

    @classmethod
    def from_settings(cls, builds: Any, options: dict[str, str] | None = None
                      ) -> "Policy":
        """The server's policy, lowered by a repo's options (see `for_repo`)."""
        return cls.for_repo(builds, options or {})[0]

    @classmethod
    def for_repo(cls, builds: Any, options: dict[str, str]) -> tuple["Policy", list[str]]:
        """The policy for one repo's builds, and a warning line per option ignored."""
        from .sandbox_limits import LimitError

        try:
            limits, warnings = Limits.from_settings(builds).lowered(options)
            network, more = sandbox_net.effective(str(getattr(builds, "network", "") or ""),
                                                  options.get("build.network", ""))
        except (LimitError, sandbox_net.NetworkError) as exc:
            raise SandboxError(str(exc)) from None
        return cls(bool(getattr(builds, "sandbox", True)),
                   bool(getattr(builds, "allow_unsandboxed", False)),
                   str(getattr(builds, "sandbox_user", "") or "nobody"),
                   network, limits, str(getattr(builds, "uid_range", "") or "")), warnings + more

    @classmethod
    def from_payload(cls, value: Any) -> "Policy":
        """A job's `sandbox` field: a dict (to_payload), or the bool older servers sent."""
        if isinstance(value, dict):
            uid = value.get("uid")
            return cls(bool(value.get("enabled", True)), bool(value.get("allow_unsandboxed", False)),
                       str(value.get("user") or "nobody"), str(value.get("network") or ""),
                       Limits.from_payload(value.get("limits")), str(value.get("uid_range") or ""),
                       int(uid) if uid is not None else None)
        return cls(enabled=bool(True if value is None else value))

    def to_payload(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "allow_unsandboxed": self.allow_unsandboxed,
                "user": self.user, "network": self.network, "limits": self.limits.to_payload(),
                "uid_range": self.uid_range, "uid": self.uid}

    def with_uid(self, uid: int | None) -> "Policy":
        return replace(self, uid=uid)

    def floored(self, worker: "Policy") -> tuple["Policy", list[str]]:
        """This policy (a job's, read from Redis) never looser than WORKER's (the worker's own
        `[builds]`): whoever can write a job into Redis must not be able to turn the sandbox
        off, give a build the host's network, raise a limit or pick the uid it runs as.

        The worker's switches, user and uid range are taken as they are (the uid is chosen
        by the worker from its own range, never read from the job); the network is the
        narrower of the two (none < outbound < host); each limit the lower of the two.
        Returns the policy and one line per value the worker lowered (for the build log)."""
        notes: list[str] = []
        rank = {"none": 0, "outbound": 1, "host": 2}
        own = worker.network or sandbox_net.default_mode()
        asked = self.network or own
        network = asked if rank.get(asked, 0) <= rank.get(own, 0) else own
        if asked != network:
            notes.append(f"gitserve: this worker allows network {own}, not {asked}: using {own}")
        if asked not in rank:
            network = "none"
        lowered: dict[str, int] = {}
        for f in fields(Limits):
            mine, theirs = getattr(worker.limits, f.name), getattr(self.limits, f.name)
            if theirs > mine:
                lowered[f.name] = mine
                notes.append(f"gitserve: this worker's {f.name.replace('_', ' ')} limit is "
                             f"{worker.limits.show(f.name)}: using it")
        limits = replace(self.limits, **lowered)
        return replace(worker, network=network, limits=limits, uid=None), notes

    def run_as(self) -> tuple[int, int] | None:
        """(uid, gid) scripts run as when this process is root; None when it is not."""
        if os.geteuid() != 0:
            return None
        if self.uid is not None:
            if self.uid <= 0:
                raise SandboxError(f"build uid {self.uid}: builds never run as root")
            return self.uid, self.uid
        try:
            entry = pwd.getpwnam(self.user)
        except KeyError:
            raise SandboxError(f"[builds] sandbox_user {self.user!r} does not exist on this host") from None
        if entry.pw_uid == 0:
            raise SandboxError(f"[builds] sandbox_user {self.user!r} is root: builds never run as root")
        return entry.pw_uid, entry.pw_gid


_probe_lock = threading.Lock()
_probed: dict[tuple[int, str], str | None] = {}


def unavailable_reason(policy: Policy) -> str | None:
    """Why the sandbox cannot run here (None: it can). Tried once per process and user."""
    if not policy.enabled:
        return "[builds] sandbox = false"
    run_as = policy.run_as()  # raises SandboxError for a bad sandbox_user
    key = (os.geteuid(), str(run_as))
    with _probe_lock:
        if key not in _probed:
            _probed[key] = _probe(policy, run_as)
        return _probed[key]


def _probe(policy: Policy, run_as: tuple[int, int] | None) -> str | None:
    if shutil.which("bwrap") is None:
        return "bwrap not found (install the bubblewrap package)"
    if run_as is not None and shutil.which("setpriv") is None:
        return "setpriv not found (install util-linux)"
    argv = _bwrap_prefix(run_as, binds=[], hide=[]) + ["--", *_drop(run_as), "true"]
    try:
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap failed: {exc}"
    if res.returncode != 0:
        err = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
        return f"bwrap cannot create namespaces here: {err}"
    return None


def describe(policy: Policy) -> str:
    """The `serve` start-up line about builds (shown as `gitserve: LINE`)."""
    try:
        reason = unavailable_reason(policy)
        run_as = policy.run_as()
    except SandboxError as exc:
        return f"local builds refused: {exc}"
    who = f"as {policy.user}" if run_as is not None else f"as uid {os.getuid()}"
    if reason is None:
        net = sandbox_net.describe(policy.network or sandbox_net.default_mode())
        if run_as is not None and policy.uid_range:
            who = f"each repo as its own uid from {policy.uid_range}"
        lim = policy.limits
        from . import sandbox_cgroup

        held = [c for c in ("memory", "pids") if sandbox_cgroup.parent(c) is not None]
        how = f" (cgroups: {' '.join(held)})" if held else " (rlimits and sampling, no cgroup)"
        return (f"builds sandboxed (bwrap: own PID, mount and network namespaces, {who}; {net}; "
                f"limits: memory {lim.show('memory')}, pids {lim.pids}, disk {lim.show('disk')}"
                f"{how})")
    if policy.allow_unsandboxed:
        return (f"WARNING: builds run UNSANDBOXED ({reason}; [builds] allow_unsandboxed "
                f"= true), {who}")
    return (f"local builds refused: no sandbox ({reason}); set [builds] "
            "allow_unsandboxed = true to run them anyway")


# --- work directories -------------------------------------------------------------------
def work_root(root: Path) -> Path:
    """ROOT, the directory holding every run's workspace, made 0700 and owned by this
    process's user, so only the worker can list it (a run sees its own, bound elsewhere)."""
    root = root.expanduser()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.stat(root, follow_symlinks=False)
    if st.st_uid != os.geteuid() or not os.path.isdir(root) or os.path.islink(root):
        raise SandboxError(f"work directory {root} is not a directory owned by this user")
    if st.st_mode & 0o077:
        os.chmod(root, 0o700)
    return root


def new_workdir(root: Path) -> Path:
    """A fresh workspace ROOT/<128 random bits> (0700) with src/, home/ and tmp/."""
    import secrets

    work = root / secrets.token_hex(16)
    work.mkdir(mode=0o700)
    for sub in ("src", "home", "tmp"):
        (work / sub).mkdir(mode=0o700)
    return work


def new_capped_workdir(root: Path, disk: int) -> tuple[Path, str | None]:
    """new_workdir on its own tmpfs of DISK bytes (gitserve.sandbox_disk): returns the
    directory and None, or why it could not be capped (then it is on ROOT's disk)."""
    import secrets

    from . import sandbox_disk

    work = root / secrets.token_hex(16)
    work.mkdir(mode=0o700)
    reason = sandbox_disk.cap(work, disk)
    for sub in ("src", "home", "tmp"):
        (work / sub).mkdir(mode=0o700)
    return work, reason


def hand_over(policy: Policy, work: Path) -> None:
    """Give the run's directories to the sandbox user (root server: the checkout was made by
    root). Called before the run: no untrusted process exists yet."""
    run_as = policy.run_as()
    if run_as is None:
        return
    uid, gid = run_as
    for sub in ("src", "home", "tmp"):
        top = work / sub
        if not top.exists():
            continue
        os.chown(top, uid, gid, follow_symlinks=False)
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


# --- the bwrap command ---------------------------------------------------------------------
def _drop(run_as: tuple[int, int] | None) -> list[str]:
    if run_as is None:
        return []
    uid, gid = run_as
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


_filter_lock = threading.Lock()
_filter: list[bytes | None] = []


def userns_filter() -> bytes | None:
    """A seccomp program (libseccomp, via pyseccomp) that refuses new user namespaces
    (unshare/clone with CLONE_NEWUSER; clone3, whose flags a filter cannot read, answers
    ENOSYS and libc falls back to clone). The root mode needs it: there bwrap makes no user
    namespace and so cannot disable nested ones. None when libseccomp is missing."""
    with _filter_lock:
        if not _filter:
            _filter.append(_build_filter())
        return _filter[0]


def _build_filter() -> bytes | None:
    import errno
    import tempfile

    try:
        import pyseccomp as sc
    except (ImportError, OSError):  # no libseccomp.so.2: the sandbox runs without the filter
        return None
    newuser = 0x10000000  # CLONE_NEWUSER
    f = sc.SyscallFilter(defaction=sc.ALLOW)
    for call in ("unshare", "clone"):
        f.add_rule(sc.ERRNO(errno.EPERM), call, sc.Arg(0, sc.MASKED_EQ, newuser, newuser))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as tmp:
        f.export_bpf(tmp)
        tmp.seek(0)
        return tmp.read()


def _seccomp_fd(program: bytes) -> int:
    fd = os.memfd_create("gitserve-seccomp", 0)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _bwrap_prefix(run_as: tuple[int, int] | None, binds: list[tuple[str, str, bool]],
                  hide: list[str], info_fd: int | None = None) -> list[str]:
    argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try"]
    if run_as is None:  # unprivileged: a user namespace, and none nested in it
        argv += ["--unshare-user", "--disable-userns"]
    else:  # root: privileged bwrap; setpriv needs these two to drop to the sandbox user
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    for entry in sorted(os.listdir("/")):
        host = "/" + entry
        if entry in _NOT_BOUND:
            continue
        if os.path.islink(host):
            argv += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host) or os.path.isfile(host):
            argv += ["--ro-bind", host, host]
    argv += ["--ro-bind", "/sys", "/sys", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    empty = [d for d in _EMPTY_DIRS if os.path.isdir(d)]
    for d in empty:
        argv += ["--tmpfs", d]
    covered = [*_EMPTY_DIRS, "/tmp", "/proc", "/dev"]
    resolv = os.path.realpath("/etc/resolv.conf")
    if _under(resolv, ["/run"]) and os.path.isfile(resolv):  # systemd-resolved, resolvconf
        binds = [(os.path.dirname(resolv), os.path.dirname(resolv), False), *binds]
    for path in sorted(set(hide)):
        if _under(path, covered):
            continue  # already behind an empty tmpfs
        if os.path.isdir(path):
            argv += ["--tmpfs", path]
            covered.append(path)
        elif os.path.exists(path):
            argv += ["--ro-bind", "/dev/null", path]
    made: set[str] = set()
    for src, dest, writable in binds:  # (after the hidden paths: binds may lie under them)
        # parents bwrap would create 0700 (untraversable for the sandbox user when root)
        for parent in reversed(Path(dest).parents):
            p = str(parent)
            if p != "/" and p not in made and (p == str(INSIDE) or _under(p, covered)):
                argv += ["--perms", "0755", "--dir", p]
                made.add(p)
        argv += ["--bind" if writable else "--ro-bind", src, dest]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    return argv


@dataclass
class Run:
    """What Popen needs for one run, and the handle that kills and reaps its namespace."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    sandboxed: bool
    pass_fds: tuple[int, ...] = ()
    popen_user: int | None = None
    popen_group: int | None = None
    _info_r: int | None = None
    _pidfd: int | None = None
    _init_pid: int | None = field(default=None, repr=False)
    network: sandbox_net.Network | None = None
    limits: Limits | None = None
    cgroup: Any = None  # sandbox_cgroup.RunCgroups where the worker can make them

    @property
    def init_pid(self) -> int | None:
        """The sandbox's init (pid 1 of its PID namespace), once started."""
        return self._init_pid

    def join_cgroups(self) -> None:
        """Popen's preexec (in the child, before exec): into the run's cgroups, so bwrap and
        all it starts are counted and limited there."""
        if self.cgroup is not None:
            self.cgroup.join()

    def popen_kwargs(self) -> dict[str, Any]:
        """Popen's arguments for this run, its cgroups' join as preexec_fn included (every
        caller gets the run's limits, whoever starts it)."""
        kw: dict[str, Any] = {"cwd": self.cwd, "env": self.env, "pass_fds": self.pass_fds}
        if self.cgroup is not None:
            kw["preexec_fn"] = self.join_cgroups
        if self.popen_user is not None:
            kw.update(user=self.popen_user, group=self.popen_group, extra_groups=[])
        return kw

    def started(self) -> None:
        """Right after Popen: learn the sandbox init's pid from bwrap (--info-fd)."""
        for fd in self.pass_fds:
            os.close(fd)
        self.pass_fds = ()
        if self.network is not None:
            self.network.started()
        if self._info_r is None:
            return
        chunks = []
        while True:
            chunk = os.read(self._info_r, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(self._info_r)
        self._info_r = None
        try:
            pid = int(json.loads(b"".join(chunks) or b"{}").get("child-pid", 0))
        except (ValueError, AttributeError):
            pid = 0
        if pid > 0:
            try:
                self._pidfd = os.pidfd_open(pid)
                self._init_pid = pid
            except OSError:  # already gone: so is everything it ran
                self._pidfd = None
        if self.network is not None and self._init_pid is not None:
            try:
                self.network.attach(self._init_pid)
            except sandbox_net.NetworkError as exc:
                self.kill()
                raise SandboxError(f"build refused: {exc}") from None

    def kill(self) -> None:
        """SIGKILL the sandbox's init: the kernel kills every process of its PID namespace."""
        if self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def reap(self, timeout: float = REAP_TIMEOUT) -> bool:
        """Kill the namespace and wait until it is empty (its init exits only after every
        process in it is gone). True when nothing the run started is left."""
        if self._pidfd is None:
            return True
        self.kill()
        ready, _, _ = select.select([self._pidfd], [], [], timeout)
        if ready:
            os.close(self._pidfd)
            self._pidfd = None
        return bool(ready)

    def close(self) -> None:
        if self.network is not None:
            self.network.close()
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        for fd in (self._info_r, self._pidfd, *self.pass_fds):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._info_r = self._pidfd = None
        self.pass_fds = ()


def base_env(extra: dict[str, str]) -> dict[str, str]:
    env = {"PATH": DEFAULT_PATH, "LANG": os.environ.get("LANG") or "C.UTF-8"}
    env.update(extra)
    return env


def prepare(policy: Policy, work: Path, argv: list[str], env: dict[str, str],
            hide: Iterable[Path] = (), ro: Iterable[Path] = (), src: Path | None = None,
            forward: Iterable[int] = (), reach: Iterable[int] = ()) -> Run:
    """The command that runs ARGV (paths as seen inside: /build/src/...) in WORK's sandbox.

    SRC (default WORK/src) is the checkout seen as /build/src; HIDE: directories/files to
    make invisible besides the defaults; RO: directories bound read-only at their own path
    (the object store the checkout borrows); FORWARD: ports of the host's 127.0.0.1 that
    reach the run (a site's process, `outbound` network only); REACH: ports of the host's
    127.0.0.1 the run may reach (deploy.post and the new live side's processes). Raises SandboxError when
    there is no sandbox and unsandboxed runs are not allowed."""
    src = (src or work / "src").resolve()
    run_as = policy.run_as()
    reason = unavailable_reason(policy)
    if reason is not None:
        if not policy.allow_unsandboxed:
            raise SandboxError(f"build refused: no sandbox on this worker ({reason}); "
                               "[builds] allow_unsandboxed = true would run it unsandboxed")
        return _unsandboxed(work, src, [*policy.limits.prlimit_argv(), *argv], env, run_as)
    hidden = [str(Path(p).expanduser().resolve()) for p in hide]
    if os.environ.get("HOME"):  # the server user's home (~/.ssh, the quickstart's demo key)
        hidden.append(str(Path(os.environ["HOME"]).expanduser().resolve()))
    try:
        hidden.append(str(Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()))
    except KeyError:
        pass
    hidden.append(str(work.parent.resolve()))
    if not _under(str(src), [str(work.parent.resolve())]):
        hidden.append(str(src.parent))  # a checkout elsewhere: its neighbours stay hidden
    binds = [(str(src), str(INSIDE_SRC), True),
             (str((work / "home").resolve()), str(INSIDE_HOME), True),
             (str((work / "tmp").resolve()), "/tmp", True)]
    binds += [(str(Path(p).resolve()), str(Path(p).resolve()), False) for p in ro]
    info_r, info_w = os.pipe()
    full = _bwrap_prefix(run_as, binds, [h for h in hidden if h not in ("/", "")], info_w)
    network = sandbox_net.Network(policy.network or sandbox_net.default_mode(),
                                  unprivileged=run_as is None, forward=tuple(forward),
                                  reach=tuple(reach))
    full += network.bwrap_args()
    fds = [info_w, *network.pass_fds()]
    program = userns_filter() if run_as is not None else None
    if program is not None:
        fds.append(_seccomp_fd(program))
        full += ["--seccomp", str(fds[-1])]
    full += ["--chdir", str(INSIDE_SRC), "--clearenv"]
    for key, value in base_env({"HOME": str(INSIDE_HOME), **env}).items():
        full += ["--setenv", key, value]
    from . import sandbox_cgroup

    cgroups = sandbox_cgroup.make(policy.limits.pids, policy.limits.memory_ceiling())
    # rlimits after the drop (lowering needs no privilege; RLIMIT_NPROC counts the build uid);
    # no RLIMIT_DATA where the memory cgroup holds memory
    memory_cgroup = cgroups is not None and cgroups.memory
    full += ["--", *_drop(run_as), *policy.limits.prlimit_argv(data=not memory_cgroup), *argv]
    return Run(argv=full, env={"PATH": os.environ.get("PATH", DEFAULT_PATH)}, cwd="/",
               sandboxed=True, pass_fds=tuple(fds), _info_r=info_r, network=network,
               limits=policy.limits, cgroup=cgroups)


def _unsandboxed(work: Path, src_dir: Path, argv: list[str], env: dict[str, str],
                 run_as: tuple[int, int] | None) -> Run:
    """allow_unsandboxed: same argv with the inside paths mapped to the host ones."""
    src, home = str(src_dir), str((work / "home").resolve())

    def host(value: str) -> str:
        for inside, outside in ((str(INSIDE_SRC), src), (str(INSIDE_HOME), home)):
            if value == inside or value.startswith(inside + "/"):
                return outside + value[len(inside):]
        return value

    full_env = base_env({"HOME": home, "TMPDIR": str((work / "tmp").resolve())})
    full_env.update({k: host(v) for k, v in env.items()})
    run = Run(argv=[host(a) for a in argv], env=full_env, cwd=src, sandboxed=False)
    if run_as is not None:
        # no mount namespace to bind the workspace into: the sandbox user walks the real path,
        # so the work root and this run's directory get search permission (names stay secret)
        for d in (work.parent, work):
            os.chmod(d, (os.stat(d).st_mode & 0o7777) | 0o001)
        for d in reversed(Path(src).parents):
            if not os.stat(d).st_mode & 0o001 and os.stat(d).st_uid != run_as[0]:
                raise SandboxError(f"unsandboxed builds run as uid {run_as[0]}, who cannot reach "
                                   f"{work}: {d} is not searchable (set GITSERVE_WORK_DIR)")
        run.popen_user, run.popen_group = run_as
    return run


def inside_path(work: Path, host_path: Path) -> str:
    """HOST_PATH (under WORK/src, not resolved: it may be a symlink the commit holds) as the
    sandboxed script sees it."""
    rel = os.path.relpath(os.path.abspath(host_path), os.path.abspath(work / "src"))
    if rel == ".." or rel.startswith("../"):
        raise SandboxError(f"{host_path} is not in the workspace")
    return str(INSIDE_SRC) if rel == "." else f"{INSIDE_SRC}/{rel}"


def remove_workdir(work: Path) -> None:
    """Delete a run's directory, even the parts its script made unwritable (chmod 000)."""
    def fix(func: Any, path: str, _exc: Any) -> None:
        try:
            os.chmod(os.path.dirname(path), 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass
    from . import sandbox_disk

    sandbox_disk.release(work)  # a capped workspace: its tmpfs (and all in it) goes at once
    shutil.rmtree(work, onerror=fix)
