"""A real Gitolite site (Debian gitolite3) moves over with one command (SPEC §2, §4).

The site runs behind a private sshd exactly as Gitolite is deployed: sshd's AuthorizedKeysFile
is the hosting user's ~/.ssh/authorized_keys that Gitolite writes, HOME is the site's home.
Users make it what a real site is: keys pushed through gitolite-admin, repos, a deny rule, a
wild repo created by a user with READERS set with `perms` and a description set with `desc`.
Then `gitserve init --from-gitolite HOME` imports it, gitserve takes over the same
authorized_keys file (same sshd, same port: users' `git@host:repo` URLs do not change), and
every user's info, clones, pushes and commands must give what Gitolite gave, over that sshd
and over gitserve's built-in server. The admin's old gitolite-admin clone keeps working.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.server import GitServer, _merge_settings
from tests.support.sshd import PrivateSshd
from tests.support.tools import REPO_ROOT, require_tool

pytestmark = pytest.mark.timeout(300)

USERS = ("admin", "alice", "bob", "carol")
CONF = """repo gitolite-admin
    RW+     =   admin

repo testing
    RW+     =   @all

@devs = alice bob

repo foo
    RW+             =   alice
    -   protected   =   bob
    RW              =   @devs
    R               =   carol

repo wild/CREATOR/[a-z].*
    C       =   @all
    RW+     =   CREATOR
    RW      =   WRITERS
    R       =   READERS
"""
WILD = "wild/alice/proj"
SHELL_COMMAND = f"/usr/bin/env PYTHONPATH={REPO_ROOT} {sys.executable} -m gitserve"


class Client:
    """git and ssh as one user against one ssh endpoint (an sshd, or gitserve's own server)."""

    def __init__(self, tmp: Path, keys: dict[str, Path], ssh_argv: list[str], login: str,
                 port: int) -> None:
        self.tmp, self.keys, self.ssh_argv, self.login, self.port = tmp, keys, ssh_argv, login, port

    def env(self, user: str) -> dict[str, str]:
        home = self.tmp / "client-home"
        home.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GL_", "GIT_", "SSH_"))}
        env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
                   GIT_AUTHOR_NAME=user, GIT_AUTHOR_EMAIL=f"{user}@example.com",
                   GIT_COMMITTER_NAME=user, GIT_COMMITTER_EMAIL=f"{user}@example.com",
                   GIT_SSH_COMMAND=" ".join(self.ssh(user)))
        return env

    def ssh(self, user: str) -> list[str]:
        return [*self.ssh_argv, "-p", str(self.port), "-i", str(self.keys[user])]

    def url(self, repo: str) -> str:
        return f"ssh://{self.login}@127.0.0.1:{self.port}/{repo}"

    def git(self, user: str, *args: str, cwd: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["git", *args], cwd=cwd, env=self.env(user), capture_output=True,
                           text=True, timeout=120, check=False)
        if check and r.returncode:
            raise AssertionError(f"git {' '.join(args)} as {user}: {r.stderr}")
        return r

    def run(self, user: str, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.ssh(user), f"{self.login}@127.0.0.1", *command],
                              env=self.env(user), capture_output=True, text=True, timeout=60,
                              input="", check=False)

    def clone(self, user: str, repo: str) -> Path:
        dest = self.tmp / "work" / f"{user}-{repo.replace('/', '_')}-{time.monotonic_ns()}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.git(user, "clone", "-q", self.url(repo), str(dest))
        return dest

    def commit_push(self, user: str, repo: str, ref: str) -> subprocess.CompletedProcess:
        work = self.clone(user, repo)
        (work / f"{user}.txt").write_text(f"{user} {time.monotonic_ns()}\n")
        self.git(user, "add", "-A", cwd=work)
        self.git(user, "commit", "-qm", f"{user} to {ref}", cwd=work)
        return self.git(user, "push", "origin", f"HEAD:{ref}", cwd=work, check=False)


SSH_BASE = ["ssh", "-F", "/dev/null", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]


def observe(c: Client) -> dict[str, object]:
    """What each user sees: info (after the greeting), refs, perms, desc, denials."""
    seen: dict[str, object] = {}
    for user in USERS:
        info = c.run(user, "info")
        lines = info.stdout.splitlines()
        assert lines and lines[0].startswith(f"hello {user}, this is "), info
        seen[f"info {user}"] = (info.returncode, lines[1:])
        for repo in ("foo", WILD, "testing"):
            r = c.git(user, "ls-remote", c.url(repo), check=False)
            fatal = [x for x in r.stderr.splitlines() if x.startswith("FATAL")]
            seen[f"ls-remote {user} {repo}"] = (r.returncode, r.stdout, fatal)
    seen["perms"] = c.run("alice", "perms", WILD, "-l").stdout
    seen["desc"] = c.run("alice", "desc", WILD).stdout
    seen["bob perms"] = c.run("bob", "perms", WILD, "-l").returncode != 0
    return seen


def push_outcomes(c: Client) -> dict[str, object]:
    """Who may push where: (accepted?, the FATAL line of a refusal)."""
    out: dict[str, object] = {}
    for user, repo, ref in (("alice", "foo", "master"), ("bob", "foo", "master"),
                            ("bob", "foo", "protected"), ("carol", "foo", "master"),
                            ("bob", WILD, "master"), ("alice", WILD, "master")):
        r = c.commit_push(user, repo, ref)
        fatal = [x.removeprefix("remote: ").strip() for x in r.stderr.splitlines()
                 if "FATAL" in x]
        out[f"{user} {repo} {ref}"] = (r.returncode == 0, fatal)
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A Gitolite site behind a private sshd, populated through Gitolite itself."""
    gitolite = require_tool("gitolite")
    tmp = tmp_path_factory.mktemp("gitolite-move")
    keys: dict[str, Path] = {}
    for user in USERS:
        keys[user] = tmp / "keys" / user
        keys[user].parent.mkdir(exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", user, "-f",
                        str(keys[user])], check=True, timeout=30)
    glhome = tmp / "glhome"
    glhome.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GL_")}
    env.update(HOME=str(glhome))
    subprocess.run([gitolite, "setup", "-pk", f"{keys['admin']}.pub"], env=env, check=True,
                   capture_output=True, timeout=120)
    (glhome / ".ssh" / "authorized_keys").chmod(0o600)
    sshd = PrivateSshd(tmp / "sshd", glhome / ".ssh" / "authorized_keys",
                       set_env={"HOME": str(glhome)}).start()
    c = Client(tmp, keys, SSH_BASE, sshd.user, sshd.port)
    try:
        admin_clone = c.clone("admin", "gitolite-admin")
        for user in USERS[1:]:
            (admin_clone / "keydir" / f"{user}.pub").write_text(Path(f"{keys[user]}.pub").read_text())
        (admin_clone / "conf" / "gitolite.conf").write_text(CONF)
        c.git("admin", "add", "-A", cwd=admin_clone)
        c.git("admin", "commit", "-qm", "users and repos", cwd=admin_clone)
        c.git("admin", "push", "-q", "origin", "master", cwd=admin_clone)
        assert c.commit_push("alice", "foo", "master").returncode == 0
        assert c.commit_push("alice", WILD, "master").returncode == 0  # creates the wild repo
        assert c.run("alice", "perms", WILD, "+", "READERS", "bob").returncode == 0
        assert c.run("alice", "desc", WILD, "Alices", "project").returncode == 0
        yield {"tmp": tmp, "glhome": glhome, "keys": keys, "sshd": sshd, "client": c,
               "admin_clone": admin_clone}
    finally:
        sshd.stop()


def test_a_gitolite_site_moves_over_with_one_command(site):
    tmp, glhome, c = site["tmp"], site["glhome"], site["client"]
    pushes_before = push_outcomes(c)
    assert pushes_before["alice foo master"][0] and not pushes_before["bob foo protected"][0]
    before = observe(c)
    assert before[f"ls-remote bob {WILD}"][0] == 0 and before["perms"] == "READERS bob\n"
    assert before["desc"].strip() == "Alices project"
    gl_admin_log = subprocess.run(["git", "--git-dir", str(glhome / "repositories/gitolite-admin.git"),
                                   "rev-list", "master"], capture_output=True, text=True,
                                  check=True).stdout.split()

    # --- the move: one command --------------------------------------------------------
    srv = GitServer(home=tmp / "gshome", tmp=tmp / "gs")
    srv.tmp.mkdir()
    out = srv.admin_cli("init", "--from-gitolite", str(glhome)).stdout
    assert "copied 3 repositories" in out, out
    _merge_settings(srv.home, {"server": {
        "authorized_keys": str(glhome / ".ssh" / "authorized_keys"),
        "shell_command": SHELL_COMMAND}})
    srv.keys.update(site["keys"])
    srv.start()  # rewrites the authorized_keys block: sshd now runs `gitserve shell`
    try:
        ak = (glhome / ".ssh" / "authorized_keys").read_text()
        assert "# gitolite start" not in ak and "gitolite-shell" not in ak
        assert ak.count(" shell ") == len(USERS) + 1  # and the builder's key

        # what moved: history on master, Gitolite's files kept, its hooks gone
        gs_admin = srv.home / "repositories" / "gitolite-admin.git"
        ours = subprocess.run(["git", "--git-dir", str(gs_admin), "rev-list", "master"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert ours == gl_admin_log
        wild = srv.repo_path(WILD)
        assert (wild / "gl-creator").read_text().strip() == "alice"
        assert (wild / "gl-perms").read_text() == "READERS bob\n"
        assert (wild / "description").read_text().strip() == "Alices project"
        for repo in ("foo", WILD, "testing"):
            hooks = srv.repo_path(repo) / "hooks"
            assert not (hooks / "update").exists() and not (hooks / "update").is_symlink()
            assert not (srv.repo_path(repo) / "gl-conf").exists()
        assert (glhome / "repositories" / "foo.git" / "hooks" / "update").is_symlink()  # copy

        # the same sshd, the same URLs: everything looks as it did
        after = observe(c)
        assert {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v} == {}
        builtin = Client(tmp, site["keys"], SSH_BASE, "git", srv.port)
        via_builtin = observe(builtin)
        assert {k: (before.get(k), v) for k, v in via_builtin.items() if before.get(k) != v} == {}
        assert push_outcomes(c) == pushes_before
        assert push_outcomes(builtin) == pushes_before

        # the admin's gitolite-admin clone, made from Gitolite, pulls and pushes master
        work = site["admin_clone"]
        pull = c.git("admin", "pull", "-q", "--ff-only", cwd=work)
        assert pull.returncode == 0
        conf = work / "conf" / "gitolite.conf"
        conf.write_text(conf.read_text() + "\nrepo newrepo\n    RW+ = alice\n")
        c.git("admin", "commit", "-qam", "newrepo", cwd=work)
        push = c.git("admin", "push", "origin", "master", cwd=work)
        assert "[new branch]" not in push.stderr and "forced update" not in push.stderr
        assert srv.repo_path("newrepo").is_dir()
        assert c.clone("alice", "newrepo").is_dir()
        assert " R W\tnewrepo" in c.run("alice", "info").stdout
    finally:
        srv.stop()


def test_move_takes_the_repositories_and_a_failure_puts_them_back(site, tmp_path):
    """--move with --repositories: repositories leave the old place; a refused import
    (here: the target home is not empty) moves nothing."""
    src = tmp_path / "old" / "repositories"
    src.parent.mkdir()
    subprocess.run(["cp", "-a", str(site["glhome"] / "repositories"), str(src.parent)], check=True)
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    r = subprocess.run([sys.executable, "-m", "gitserve", "--home", str(busy), "init",
                        "--repositories", str(src), "--move"], capture_output=True, text=True,
                       env=env, timeout=120, check=False)
    assert r.returncode == 1 and "not empty" in r.stderr and r.stderr.count("\n") == 1
    assert (src / "foo.git").is_dir()
    home = tmp_path / "home"
    r = subprocess.run([sys.executable, "-m", "gitserve", "--home", str(home), "init",
                        "--repositories", str(src), "--move"], capture_output=True, text=True,
                       env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert "moved 3 repositories" in r.stdout
    assert sorted(p.name for p in src.iterdir()) == ["gitolite-admin.git"]
    assert (home / "repositories" / f"{WILD}.git" / "gl-perms").read_text() == "READERS bob\n"
    log = subprocess.run(["git", "--git-dir", str(home / "repositories/gitolite-admin.git"),
                          "log", "--format=%s", "master"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert len(log) == 2 and log[0] == "users and repos" and log[1].startswith("gitolite setup -pk")
