"""gitserve behind the system OpenSSH: a private sshd whose authorized_keys gitserve maintains,
each key forced to `gitserve shell USER` (SPEC §4). Every answer is compared with what the
built-in server gives the same user, so both transports provably run the same session."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.server import GitServer, make_server
from tests.support.sshd import PrivateSshd
from tests.support.pushes import remote, timed_push
from tests.support.tools import REPO_ROOT

pytestmark = pytest.mark.timeout(180)

CONF = """
repo gitolite-admin
    RW+ = admin
repo plain
    RW+ = alice
    -   protected = bob
    RW  = bob
    R   = carol
repo built
    RW+ = alice
    option build.enable = 1
repo users/CREATOR/..*
    C   = @all
    RW+ = CREATOR
    RW  = WRITERS
    R   = READERS
"""
FOREIGN = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFyAB7ACSAbF0J7hG1Ju2pRFL6NpNyu3a4YpqS7DUbTN someone-else@host"
# this checkout's gitserve, for AuthorizedKeysCommand (the forced commands need no setting:
# `admin authorized-keys` writes the fast client of this tree, which finds its gitserve itself)
SHELL_COMMAND = f"/usr/bin/env PYTHONPATH={REPO_ROOT} {sys.executable} -m gitserve"
FAST_CLIENT = f"{sys.executable} -I -S {REPO_ROOT}/gitserve/ssh/shellclient.py"


class Both:
    """One gitserve home served twice: built-in server and private sshd + `gitserve shell`."""

    def __init__(self, srv: GitServer, sshd: PrivateSshd) -> None:
        self.srv, self.sshd = srv, sshd

    def env(self, user: str) -> dict[str, str]:
        env = self.srv.client_env(user)
        env["GIT_SSH_COMMAND"] = " ".join(self.sshd.ssh_command(self.srv.key_for(user)))
        return env

    def ssh(self, user: str, *command: str, input: str = "") -> subprocess.CompletedProcess:
        argv = self.sshd.ssh_command(self.srv.key_for(user)) + [f"{self.sshd.user}@127.0.0.1", *command]
        return subprocess.run(argv, check=False, capture_output=True, text=True, input=input, timeout=60,
                              env=self.env(user))

    def git(self, user: str, *args: str, cwd: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["git", *args], check=False, cwd=cwd, capture_output=True, text=True,
                           env=self.env(user), timeout=120)
        if check and r.returncode:
            raise AssertionError(f"git {' '.join(args)} as {user} over sshd: {r.stderr}\n"
                                 f"{self.sshd.log()[-2000:]}")
        return r

    def clone(self, user: str, repo: str) -> Path:
        dest = self.srv.tmp / "sshd-work" / f"{user}-{repo.replace('/', '_')}-{time.monotonic_ns()}"
        dest.parent.mkdir(exist_ok=True)
        self.git(user, "clone", "-q", self.sshd.url(repo), str(dest))
        return dest


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("system-sshd")
    ak = tmp / "authorized_keys"
    ak.write_text(f"# kept: a key that is not gitserve's\n{FOREIGN}\n")
    ak.chmod(0o600)
    srv = make_server(tmp / "srv", conf=CONF, users=("alice", "bob", "carol"),
                      settings={"server": {"authorized_keys": str(ak),
                                           "commands": "count hello"}})
    sshd = PrivateSshd(tmp / "sshd", ak)
    try:
        # site commands (Gitolite's `commands`): one reads stdin, one never does; the table is
        # made at start, so the server starts again with them in place
        (srv.home / "commands").mkdir()
        for name, body in SITE_COMMANDS.items():
            (srv.home / "commands" / name).write_text(body)
            (srv.home / "commands" / name).chmod(0o755)
        srv.stop()
        srv.start()
        sshd.start()
        yield Both(srv, sshd)
    finally:
        sshd.stop()
        srv.stop()


SITE_COMMANDS = {
    "count": "#!/bin/sh\nprintf '%s read ' \"$GL_USER\"; wc -c | tr -d ' '\n",
    "hello": "#!/bin/sh\necho \"hello $GL_USER $*\"\n",
}


def test_site_commands_get_the_sessions_stdin(both):
    """As Gitolite execs its commands with the client's stdin: all of it reaches the program,
    on both transports; a program that never reads it ends the session at once, although
    the client's stdin is still open."""
    data = "x" * 300_000
    for name, run in (("built-in", both.srv.ssh), ("sshd", both.ssh)):
        got = run("alice", "count", input=data)
        assert (got.returncode, got.stdout) == (0, "alice read 300000\n"), (name, got.stderr)
        assert run("alice", "count").stdout == "alice read 0\n"
    key = both.srv.key_for("alice")
    clients = {
        "built-in": (both.srv.ssh_command(key) + [f"git@{both.srv.host}"],
                     both.srv.client_env("alice", key)),
        "sshd": (both.sshd.ssh_command(key) + [f"{both.sshd.user}@127.0.0.1"],
                 both.env("alice")),
    }
    for name, (argv, env) in clients.items():
        proc = subprocess.Popen([*argv, "hello", "a", "b"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:  # stdin stays open: only the program's end may end the session
            proc.wait(timeout=30)
            assert proc.stdout is not None
            assert (proc.returncode, proc.stdout.read()) == (0, b"hello alice a b\n"), name
        finally:
            if proc.poll() is None:
                proc.kill()  # the session waited for the client's stdin
            proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def _block(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return lines[lines.index("# gitserve start") + 1:lines.index("# gitserve end")]


def test_authorized_keys_block_is_kept_up_to_date_and_other_lines_kept(both):
    ak = both.sshd.authorized_keys
    text = ak.read_text()
    assert text.startswith(f"# kept: a key that is not gitserve's\n{FOREIGN}\n")
    block = _block(ak)
    users = [re.search(r" shell (\S+)\",", line).group(1) for line in block]
    assert sorted(users) == [":builder", "admin", "alice", "bob", "carol"]
    for line in block:
        assert line.startswith(f'command="{FAST_CLIENT} --home {both.srv.home.resolve()} shell ')
        assert '",no-pty,no-port-forwarding,no-X11-forwarding,no-agent-forwarding ssh-' in line
    cli = both.srv.admin_cli("admin", "authorized-keys").stdout.splitlines()
    assert cli == block
    # an admin push that adds a key, made through sshd itself, lets the new user in at once
    key = both.srv.keygen("frank")
    work = both.clone("admin", "gitolite-admin")
    (work / "keydir" / "frank.pub").write_text(Path(f"{key}.pub").read_text())
    conf = work / "conf" / "gitolite.conf"
    conf.write_text(conf.read_text() + "\nrepo plain\n    R = frank\n")
    both.git("admin", "add", "-A", cwd=work)
    both.git("admin", "commit", "-q", "-m", "frank", cwd=work)
    both.git("admin", "push", "-q", "origin", "master", cwd=work)
    both.srv.keys["frank"] = key
    assert any(" shell frank\"," in line for line in _block(ak))
    assert " R  \tplain" in both.ssh("frank", "info").stdout
    # remove-key from the CLI takes the line out again; the foreign key stays
    both.srv.admin_cli("admin", "remove-key", "frank")
    assert not any(" shell frank\"," in line for line in _block(ak))
    assert FOREIGN in ak.read_text()
    assert both.ssh("frank", "info").returncode == 255  # sshd itself refuses the key now
    assert oct(ak.stat().st_mode & 0o777) == "0o600"


def test_info_help_and_unknown_command_match_the_builtin_server(both):
    for user in ("alice", "bob", "carol"):
        for cmd in (["info"], [], ["help"], ["frobnicate", "x"], ["perms", "plain", "-l"]):
            ours = both.ssh(user, *cmd)
            builtin = both.srv.ssh(user, *cmd)
            assert (ours.returncode, ours.stdout, ours.stderr) == \
                (builtin.returncode, builtin.stdout, builtin.stderr), (user, cmd)
    unknown = both.ssh("alice", "frobnicate", "x")
    assert unknown.returncode == 25  # Gitolite's FATAL status
    assert unknown.stderr == "FATAL: unknown git/gitolite command: 'frobnicate x'\n"


def test_clone_push_archive_and_denied_ref_as_over_the_builtin_server(both):
    work = both.clone("alice", "plain")
    both.srv.commit("alice", work, "a.txt")
    both.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    via_builtin = both.srv.git("bob", "ls-remote", both.srv.url("plain")).stdout
    assert both.git("bob", "ls-remote", both.sshd.url("plain")).stdout == via_builtin
    assert "refs/heads/main" in via_builtin
    # carol reads but may not write: the same refusal on both transports
    ours = both.git("carol", "push", "origin", "HEAD:main", cwd=work, check=False)
    builtin = both.srv.git("carol", "push", both.srv.url("plain"), "HEAD:main", cwd=work, check=False)
    assert ours.returncode != 0 and "DENIED" in ours.stderr
    assert _fatal(ours.stderr) == _fatal(builtin.stderr)
    # a denied ref inside an allowed repo: Gitolite's message, the other ref goes through
    bob = both.clone("bob", "plain")
    both.srv.commit("bob", bob, "b.txt")
    ours = both.git("bob", "push", "origin", "HEAD:refs/heads/protected", "HEAD:refs/heads/bobs",
                    cwd=bob, check=False)
    builtin = both.srv.git("bob", "push", both.srv.url("plain"), "HEAD:refs/heads/protected",
                           cwd=bob, check=False)
    assert ours.returncode != 0
    assert "W refs/heads/protected plain bob DENIED by refs/heads/protected" in ours.stderr
    assert "[remote rejected] HEAD -> protected" in ours.stderr
    assert "[new branch]      HEAD -> bobs" in ours.stderr
    assert _remote_lines(ours.stderr) == _remote_lines(builtin.stderr)
    out = both.srv.tmp / "plain.tar"
    both.git("bob", "archive", "--remote", both.sshd.url("plain"), "-o", str(out), "main")
    assert out.stat().st_size > 0
    denied = both.ssh("carol", "git-receive-pack", "'plain'")
    assert denied.returncode == 25
    assert denied.stderr == "FATAL: W any plain carol DENIED by fallthru\n(or you mis-spelled the reponame)\n"


def _fatal(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "FATAL" in line or "DENIED" in line]


def _remote_lines(stderr: str) -> list[str]:
    return [line.rstrip() for line in stderr.splitlines() if line.startswith("remote:")]


def test_wild_repo_created_by_clone_and_audited_with_the_shell_peer(both):
    work = both.clone("alice", "users/alice/tool")
    assert (both.srv.repo_path("users/alice/tool") / "gl-creator").read_text().strip() == "alice"
    assert both.ssh("alice", "perms", "users/alice/tool", "+", "READERS", "bob").returncode == 0
    both.srv.commit("alice", work, "t.txt")
    both.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    assert " R  \tusers/alice/tool" in both.ssh("bob", "info").stdout
    both.clone("bob", "users/alice/tool")
    audit = both.srv.audit_lines()
    created = [a for a in audit if a.get("op") == "C" and a.get("repo") == "users/alice/tool"]
    assert created and created[0]["user"] == "alice" and created[0]["ip"] == "127.0.0.1"
    pushed = [a for a in audit if a.get("op") == "push" and a.get("repo") == "users/alice/tool"]
    assert pushed and pushed[-1]["result"] == "updated"


def test_sync_build_log_streams_through_sshd(both):
    work = both.clone("alice", "built")
    build = work / ".gitserve" / "build"
    build.parent.mkdir()
    build.write_text("#!/bin/sh\necho first line\nsleep 4\necho second line\n")
    build.chmod(0o755)
    both.srv.git("alice", "add", "-A", cwd=work)
    both.srv.git("alice", "commit", "-q", "-m", "build", cwd=work)

    class ViaSshd:
        def client_env(self, user: str) -> dict[str, str]:
            return both.env(user)

    code, lines = timed_push(ViaSshd(), "alice", work, "origin", "HEAD:main")  # type: ignore[arg-type]
    assert code == 0, lines
    at = {line[len("remote: "):].strip(): t for t, line in lines if line.startswith("remote: ")}
    assert at["second line"] - at["first line"] >= 3.5, lines  # live, not at the end
    summary = remote(lines)[-1]
    assert re.fullmatch(r"build \d+ passed in \d+\.\ds", summary), lines
    build_id = summary.split()[1]
    log = both.ssh("alice", "builds", "log", build_id)
    assert log.stdout.splitlines() == ["first line", "second line", summary]


def test_authorized_keys_command_mode(both, tmp_path):
    """sshd asks `gitserve admin authorized-keys --type %t --key %k` for each key offered."""
    if os.geteuid() != 0:
        pytest.skip("sshd runs AuthorizedKeysCommand as another user only when started as root")
    empty = tmp_path / "no_keys"
    empty.write_text("")
    sshd = PrivateSshd(tmp_path / "sshd", empty)
    sshd.extra = [
        (f"AuthorizedKeysCommand {SHELL_COMMAND} --home {both.srv.home} admin authorized-keys "
         "--type %t --key %k"),
        "AuthorizedKeysCommandUser root",
    ]
    sshd.start()
    try:
        pair = Both(both.srv, sshd)
        info = pair.ssh("alice", "info")
        assert info.returncode == 0, sshd.log()[-2000:]
        assert info.stdout == both.srv.ssh("alice", "info").stdout
        one = both.srv.admin_cli("admin", "authorized-keys", "--fingerprint",
                                 _fingerprint(both.srv.key_for("bob"))).stdout.splitlines()
        assert len(one) == 1 and " shell bob\"," in one[0]
        assert both.srv.admin_cli("admin", "authorized-keys", "--key", "AAAAnope").stdout == ""
    finally:
        sshd.stop()


def _fingerprint(key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1]


def test_pushes_through_sshd_are_repacked_after_the_session_ends(both):
    """The built-in server repacks after a push in a thread of its process; `gitserve shell`
    exits at once, so it repacks in a detached child that neither sshd nor git waits for."""
    work = both.clone("alice", "users/alice/packs")
    for i in range(3):
        both.srv.commit("alice", work, f"p{i}.txt")
        started = time.monotonic()
        both.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
        assert time.monotonic() - started < 20
    pack_dir = both.srv.repo_path("users/alice/packs") / "objects" / "pack"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        packs = list(pack_dir.glob("*.pack"))
        sidecars = list(pack_dir.glob("*.gitserve-tips"))
        if len(packs) == 1 and sidecars:
            break
        time.sleep(0.2)
    assert len(packs) == 1 and sidecars, sorted(p.name for p in pack_dir.iterdir())
    assert both.git("bob", "ls-remote", both.sshd.url("users/alice/packs"), check=False).returncode != 0
    clone = both.clone("alice", "users/alice/packs")
    assert (clone / "p2.txt").exists()


def test_protocol_v2_and_partial_clone_through_gitserve_shell(both, tmp_path):
    """sshd's AcceptEnv GIT_PROTOCOL reaches `gitserve shell`: git negotiates v2 and a
    blobless clone with a lazy checkout works, as over the built-in server."""
    work = both.clone("alice", "plain")
    both.srv.commit("alice", work, "v2.txt", "v2\n")
    both.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    trace = tmp_path / "trace"
    env = {**both.env("bob"), "GIT_TRACE_PACKET": str(trace)}
    dest = tmp_path / "blobless"
    r = subprocess.run(["git", "clone", "--filter=blob:none", both.sshd.url("plain"), str(dest)],
                       check=False, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "< version 2" in trace.read_text()
    assert (dest / "v2.txt").read_text() == "v2\n"
