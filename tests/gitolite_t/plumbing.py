#!/usr/bin/env python3
"""Gitolite's test plumbing (`glt`, `gitolite-upload-pack`, `gitolite-receive-pack`), aimed at
gitserve over ssh or at Debian's gitolite3, plus the `gitolite` command the test preamble calls.

Gitolite's t/*.t never talk to a server themselves: every git and ssh command goes through
`glt CMD USER ARGS`, which (in Gitolite's own copy) runs git with `--upload-pack`/`--receive-pack`
pointing at two tiny scripts that exec `gitolite-shell USER` with SSH_ORIGINAL_COMMAND set, the
way sshd's forced command would. The runner (suite.py) puts this file first on PATH under those
four names (symlinks); it dispatches on the name it was called by.

GLT_TARGET=gitolite: the same as Gitolite's plumbing, with Debian's /usr/share/gitolite3/gitolite-shell.
GLT_TARGET=gitserve: the command goes to a gitserve server over ssh, with USER's key from
~/.ssh/USER (Gitolite's t/keys). Identity over ssh is the key, so `gitolite setup` (below)
puts every test user's key in the keydir. Gitolite's shell prints `TRACE: gsh(SOC=...)` when it
runs a git service over the file transport (the test preamble checks for it to know the push
reached the shell); over ssh there is no such shell, so this plumbing prints the same line
just before it hands the command to ssh.

Never edits an assertion: the .t files run unchanged from Gitolite's tree.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

GITOLITE_SHELL = "/usr/share/gitolite3/gitolite-shell"
GITOLITE_BIN = "/usr/bin/gitolite"
# the commands Gitolite's glt sends to the shell instead of to git
EXT_COMMANDS = ("help", "info", "desc", "fork", "perms", "writable")
HOST = "127.0.0.1"
PORT_FILE = ".glt-port"
PID_FILE = ".glt-serve.pid"
START_TIMEOUT = 60.0
DEFAULT_CONF = """repo gitolite-admin
    RW+     =   admin

repo testing
    RW+     =   @all
"""


def home() -> Path:
    return Path(os.environ["HOME"])


def target() -> str:
    return os.environ.get("GLT_TARGET", "gitserve")


def bindir() -> Path:
    return Path(os.environ["GLT_BIN"])


def ssh_argv(user: str, command: str) -> list[str]:
    port = (home() / PORT_FILE).read_text().strip()
    argv = ["ssh", "-F", "/dev/null", "-p", port, "-i", str(home() / ".ssh" / user),
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20"]
    if os.environ.get("GIT_PROTOCOL"):
        argv += ["-o", f"SetEnv=GIT_PROTOCOL={os.environ['GIT_PROTOCOL']}"]
    return argv + [f"git@{HOST}", command]


def to_shell(user: str, command: str) -> None:
    """Hand COMMAND (an SSH_ORIGINAL_COMMAND) to the server as USER; never returns."""
    sys.stderr.flush()
    if target() == "gitolite":
        os.environ["SSH_ORIGINAL_COMMAND"] = command
        os.execv(GITOLITE_SHELL, [GITOLITE_SHELL, user])
    argv = ssh_argv(user, command)
    os.execvp(argv[0], argv)


def glt(args: list[str]) -> int:
    if len(args) < 2:
        print("need command and user", file=sys.stderr)
        return 2
    cmd, user, rest = args[0], args[1], args[2:]
    os.environ["G3T_USER"] = user
    if cmd in EXT_COMMANDS:
        to_shell(user, " ".join([cmd, *rest]))
    print(f"TRACE: glt({')('.join(rest)})", file=sys.stderr, flush=True)
    helper = "gitolite-receive-pack" if cmd == "push" else "gitolite-upload-pack"
    option = "--receive-pack" if cmd == "push" else "--upload-pack"
    rc = subprocess.call(["git", cmd, f"{option}={bindir() / helper}", *rest])
    if rc < 0:
        print(f"E: child died with signal {-rc}", file=sys.stderr)
        return 1
    if rc:
        print(f"W: child exited with value {rc}", file=sys.stderr)
    return rc


def pack(service: str, trace: str, args: list[str]) -> int:
    print(f"TRACE: {trace}({')('.join(args)})", file=sys.stderr, flush=True)
    repo = args[0] if args else ""
    repo = repo.removesuffix(".git")
    user = os.environ.get("G3T_USER") or "no-such-user"
    command = f"{service} '{repo}'"
    if target() == "gitserve":
        print(f"TRACE: gsh({user})", file=sys.stderr)
        print(f"TRACE: gsh(SOC={command})", file=sys.stderr)
    to_shell(user, command)
    return 1


# --- `gitolite` against gitserve: setup and query-rc -----------------------------------------

def gitserve_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    argv = [os.environ.get("GLT_PYTHON", sys.executable), "-m", "gitserve", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise SystemExit(f"gitserve {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def stop_server() -> None:
    pidfile = home() / PID_FILE
    try:
        pgid = int(pidfile.read_text())
    except (OSError, ValueError):
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            os.killpg(pgid, 0)
            time.sleep(0.05)
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def setup() -> int:
    """`gitolite setup -a admin` for gitserve: a fresh server home in $HOME (so that the
    tests' `~/repositories` is gitserve's) with Gitolite's default conf, every test user's
    key in the keydir, and a server. Nothing else is copied or set: the default branch (master)
    and Gitolite's VREFs are what `init --from-gitolite` gives any imported site."""
    stop_server()
    h = home()
    seed = h / ".glt-seed"
    shutil.rmtree(seed, ignore_errors=True)
    (seed / "conf").mkdir(parents=True)
    (seed / "keydir").mkdir()
    (seed / "conf" / "gitolite.conf").write_text(DEFAULT_CONF)
    for pub in sorted((h / ".ssh").glob("*.pub")):
        shutil.copy(pub, seed / "keydir" / pub.name)
    fresh = h / ".glt-init"
    shutil.rmtree(fresh, ignore_errors=True)
    out = gitserve_cli("--home", str(fresh), "init", "--from-gitolite", str(seed))
    sys.stdout.write(out.stdout)
    for entry in fresh.iterdir():
        dest = h / entry.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        entry.rename(dest)
    fresh.rmdir()
    shutil.rmtree(seed)
    toml = h / "gitserve.toml"
    # no builds or deploys happen in these tests: no build workers (`--workers 0` below) or
    # nginx. The embedded Redis stays (the default setup): with an unreachable one instead,
    # serve's notify worker would exit at start and be respawned all along (a Python start each)
    text = toml.read_text().replace('nginx = "embedded"', 'nginx = "system"')
    # extra `[server]` settings from the runner (e.g. git_config_keys for a config test)
    extra = os.environ.get("GLT_SERVER_SETTINGS", "").replace(";", "\n")
    text = text.replace("[server]\n", "[server]\n" + (extra + "\n" if extra else ""), 1)
    toml.write_text(text)
    port = free_port()
    logfile = h / ".glt-serve.log"
    start = logfile.stat().st_size if logfile.exists() else 0
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(
            [os.environ.get("GLT_PYTHON", sys.executable), "-m", "gitserve", "--home", str(h),
             "serve", "--listen", f"{HOST}:{port}", "--workers", "0"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    (h / PID_FILE).write_text(str(proc.pid))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        with open(logfile, "rb") as f:
            f.seek(start)
            if b"listening on" in f.read():
                (h / PORT_FILE).write_text(str(port))
                return 0
        time.sleep(0.05)
    stop_server()
    print("gitserve serve did not start; see ~/.glt-serve.log", file=sys.stderr)
    return 1


def gitolite(args: list[str]) -> int:
    if target() == "gitolite":
        os.execv(GITOLITE_BIN, [GITOLITE_BIN, *args])
    if args[:1] == ["setup"]:
        return setup()
    if args[:1] == ["query-rc"]:
        names = [a for a in args[1:] if not a.startswith("-")]
        values = {"GL_REPO_BASE": str(home() / "repositories"),
                  "GL_LOGFILE": str(home() / "logs" / "audit.log")}
        try:
            out = [values[n] for n in names]
        except KeyError as exc:
            print(f"query-rc {exc.args[0]}: not known to the gitserve plumbing", file=sys.stderr)
            return 1
        sys.stdout.write(" ".join(out) + ("" if "-n" in args else "\n"))
        return 0
    if args[:1] == ["stop-server"]:  # the runner's clean-up, not a Gitolite command
        stop_server()
        return 0
    print(f"gitolite {' '.join(args)}: not available in the gitserve plumbing", file=sys.stderr)
    return 1


def main() -> int:
    name = Path(sys.argv[0]).name
    args = sys.argv[1:]
    if name == "glt":
        return glt(args)
    if name == "gitolite-upload-pack":
        return pack("git-upload-pack", "gup", args)
    if name == "gitolite-receive-pack":
        return pack("git-receive-pack", "grp", args)
    if name == "gitolite":
        return gitolite(args)
    print(f"{name}: unknown plumbing name", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
