"""`gitserve init` and `gitserve admin add-key|remove-key|list-keys|set-conf`, run as the CLI
in child processes, with Debian gitolite3 producing the gitolite-admin repo to import."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import paramiko
import pytest

from gitserve import adminrepo, repos
from gitserve.settings import Settings
from tests.support.tools import gitserve_cmd, require_tool, subprocess_env
from tests.support.keys import copy_home, keygen, ssh_keygen_fingerprint


def run(*args: str, home: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = subprocess_env()
    env.pop("GITSERVE_HOME", None)
    cmd = gitserve_cmd(*args) if home is None else gitserve_cmd(*args, "--home", str(home))
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=120)


def run_inproc(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Same as `run`, in this process (typer's CliRunner): the CLI's start-up costs a second
    per child process on a loaded machine, and these tests make many calls."""
    from typer.testing import CliRunner

    from gitserve.cli import app

    result = CliRunner(env={"GITSERVE_HOME": None}).invoke(app, [*args, "--home", str(home)], input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def one_line_error(p: subprocess.CompletedProcess, needle: str) -> None:
    assert p.returncode != 0, p.stdout
    assert p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("gitserve: ") and needle in p.stderr, p.stderr


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture
def alice(tmp_path) -> Path:
    return keygen(tmp_path, "alice")


@pytest.fixture
def home(tmp_path, home_template) -> Path:
    return copy_home(home_template, tmp_path / "copy")


def test_init_creates_a_complete_home(tmp_path, alice):
    home = tmp_path / "home"
    p = run("init", "--admin", "alice", "--admin-key", str(alice), home=home)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"initialised gitserve home {home}\nadmin user: alice (key ED25519 SHA256:")
    s = Settings(home=home)
    for kind in ("ed25519", "rsa"):
        key = s.host_keys_dir / f"ssh_host_{kind}_key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        loaded = (paramiko.Ed25519Key if kind == "ed25519" else paramiko.RSAKey).from_private_key_file(str(key))
        assert loaded.get_name() in ("ssh-ed25519", "ssh-rsa")
        ssh_keygen_fingerprint(Path(f"{key}.pub"))  # OpenSSH reads it too
    assert stat.S_IMODE((home / "worker_key").stat().st_mode) == 0o600
    paramiko.Ed25519Key.from_private_key_file(str(home / "worker_key"))
    secret = s.secrets_key_file
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_bytes()) == 32
    tomllib.loads(s.settings_file.read_text())
    for d in ("hooks", "logs", "sites", "run"):
        assert (home / d).is_dir()
    assert repos.list_names(s) == ["gitolite-admin", "testing"]
    state = adminrepo.current(s)
    assert [(e.user, e.path) for e in state.keys] == [("alice", "keydir/alice.pub")]
    conf = subprocess.run([require_tool("git"), "--git-dir", str(s.admin_repo), "show", "HEAD:conf/gitolite.conf"],
                          capture_output=True, text=True, check=True, timeout=30).stdout
    assert conf.startswith("repo gitolite-admin\n    RW+     =   alice\n")
    assert "repo testing" in conf
    assert not [p for p in os.listdir(home.parent) if p.startswith(".home.init-")]


def test_list_keys_matches_ssh_keygen(home):
    p = run("admin", "list-keys", home=home)
    assert p.returncode == 0, p.stderr
    _, fp, label = ssh_keygen_fingerprint(home.parent / "alice.pub")
    assert p.stdout == f"alice\t{fp}\t{label}\n"


def test_init_refuses_existing_home(home, alice):
    """Even an almost empty directory is refused: it may be someone's data."""
    before = tree(home)
    p = run("init", "--admin", "bob", "--admin-key", str(alice), home=home)
    one_line_error(p, "already exists")
    assert tree(home) == before


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--admin", "alice", "--admin-key", "/nonexistent.pub"], "No such file"),
        (["--admin", "al ice", "--admin-key", "KEY"], "not a valid user name"),
        (["--admin", "alice", "--admin-key", "BADKEY"], "invalid key"),
        (["--admin", "alice", "--from-gitolite", "/tmp"], "--from-gitolite"),
        (["--from-gitolite", "/nonexistent"], "no such directory"),
    ],
)
def test_failed_init_leaves_nothing(tmp_path, alice, args, needle):
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBAD\n")
    args = [str(alice) if a == "KEY" else str(bad) if a == "BADKEY" else a for a in args]
    p = run("init", *args, home=tmp_path / "h")
    one_line_error(p, needle)
    assert not (tmp_path / "h").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".h.init-")]


def test_admin_name_from_key_file_like_gitolite_setup(tmp_path):
    pub = keygen(tmp_path, "dave@laptop")
    p = run("init", "--admin-key", str(pub), home=tmp_path / "h")
    assert p.returncode == 0, p.stderr
    assert adminrepo.current(Settings(home=tmp_path / "h")).users == ["dave"]
    assert "admin user: dave" in p.stdout


def test_add_remove_list_set_conf(home, tmp_path):
    bob = keygen(tmp_path, "bob", "ecdsa")
    p = run_inproc("admin", "add-key", "bob", str(bob), home=home)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("added keydir/bob.pub for bob: ECDSA SHA256:")
    # from stdin, as a second key with a label
    bob2 = keygen(tmp_path, "bob2", "rsa", 2048)
    p = run_inproc("admin", "add-key", "bob@work", "-", home=home, stdin=bob2.read_text())
    assert p.returncode == 0, p.stderr
    one_line_error(run_inproc("admin", "add-key", "carol", str(bob), home=home), "already belongs to user bob")
    one_line_error(run_inproc("admin", "add-key", "carol", str(tmp_path / "nope.pub"), home=home), "No such file")
    one_line_error(run_inproc("admin", "add-key", "carol", "-", home=home, stdin="hello\n"), "invalid key")
    lines = run_inproc("admin", "list-keys", home=home).stdout.splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["alice", "bob", "bob"]
    _, fp2, _ = ssh_keygen_fingerprint(bob2)
    assert f"bob\t{fp2}\tRSA" in lines
    p = run_inproc("admin", "remove-key", "bob", "--fingerprint", fp2, home=home)
    assert p.returncode == 0 and "keydir/bob@work.pub" in p.stdout, p.stderr
    one_line_error(run_inproc("admin", "remove-key", "bob", "--fingerprint", fp2, home=home), "has no key")
    conf = tmp_path / "new.conf"
    conf.write_text("repo gitolite-admin\n    RW+ = alice\nrepo demo\n    RW+ = alice bob\n")
    p = run_inproc("admin", "set-conf", str(conf), home=home)
    assert p.returncode == 0, p.stderr
    assert "created repository demo" in p.stdout
    assert repos.exists(Settings(home=home), "demo")
    conf.write_text("repo demo\n    nonsense\n")
    one_line_error(run_inproc("admin", "set-conf", str(conf), home=home), "conf/gitolite.conf:2:")
    log = subprocess.run([require_tool("git"), "--git-dir", str(home / "repositories/gitolite-admin.git"),
                          "log", "--format=%s"], capture_output=True, text=True, check=True, timeout=30)
    assert log.stdout.splitlines()[:4] == [
        "set-conf: replace conf/gitolite.conf",
        "remove-key: 1 key of bob",
        "add-key: keydir/bob@work.pub for bob (RSA " + fp2 + ")",
        log.stdout.splitlines()[3],
    ]


def test_admin_commands_need_a_home(tmp_path):
    one_line_error(run("admin", "list-keys", home=tmp_path / "none"), "gitserve init")


@pytest.fixture(scope="session")
def gitolite_admin(tmp_path_factory) -> Path:
    """A real gitolite-admin checkout (made once): `gitolite setup`, an include, a subdir key."""
    tmp_path = tmp_path_factory.mktemp("gitolite")
    alice = keygen(tmp_path, "alice")
    gitolite = require_tool("gitolite")
    git = require_tool("git")
    glhome = tmp_path / "glhome"
    glhome.mkdir()
    env = dict(os.environ, HOME=str(glhome), GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="g",
               GIT_AUTHOR_EMAIL="g@g", GIT_COMMITTER_NAME="g", GIT_COMMITTER_EMAIL="g@g")
    subprocess.run([gitolite, "setup", "-pk", str(alice)], env=env, check=True, capture_output=True,
                   timeout=120)
    work = tmp_path / "gitolite-admin"
    subprocess.run([git, "clone", "-q", str(glhome / "repositories/gitolite-admin.git"), str(work)],
                   env=env, check=True, capture_output=True, timeout=60)
    (work / "conf" / "groups.conf").write_text("@devs = alice bob\n")
    conf = work / "conf" / "gitolite.conf"
    conf.write_text('include "groups.conf"\n' + conf.read_text() + "\nrepo proj\n    RW+ = @devs\n")
    (work / "keydir" / "people").mkdir()
    bob = keygen(tmp_path, "bob")
    (work / "keydir" / "people" / "bob@home.pub").write_text(bob.read_text())
    subprocess.run([git, "add", "-A"], cwd=work, env=env, check=True, timeout=60)
    subprocess.run([git, "commit", "-qm", "more"], cwd=work, env=env, check=True, timeout=60)
    # the oracle accepts this admin tree
    subprocess.run([gitolite, "push", "-q", "origin", "HEAD"], cwd=work, env=env, check=True,
                   capture_output=True, timeout=120)
    return work


def test_from_gitolite_imports_unchanged(tmp_path, gitolite_admin):
    work = gitolite_admin
    h = tmp_path / "h"
    p = run("init", "--from-gitolite", str(work), home=h)
    assert p.returncode == 0, p.stderr
    s = Settings(home=h)
    state = adminrepo.current(s)
    assert sorted((e.user, e.path) for e in state.keys) == [
        ("alice", "keydir/alice.pub"), ("bob", "keydir/people/bob@home.pub")]
    git = require_tool("git")
    for f in ("conf/gitolite.conf", "conf/groups.conf", "keydir/alice.pub", "keydir/people/bob@home.pub"):
        got = subprocess.run([git, "--git-dir", str(s.admin_repo), "show", f"HEAD:{f}"],
                             capture_output=True, check=True, timeout=30).stdout
        assert got == (work / f).read_bytes(), f
    assert repos.list_names(s) == ["gitolite-admin", "proj", "testing"]
    # the bare gitolite repo works as a source too
    p = run("init", "--from-gitolite", str(work.parent / "glhome/repositories/gitolite-admin.git"),
            home=tmp_path / "h2")
    assert p.returncode == 0, p.stderr
    assert adminrepo.current(Settings(home=tmp_path / "h2")).users == ["alice", "bob"]
    # and so does the server's own ~/.gitolite, minus what gitolite compiled there
    assert (work.parent / "glhome/.gitolite/conf/gitolite.conf-compiled.pm").exists()
    p = run("init", "--from-gitolite", str(work.parent / "glhome/.gitolite"), home=tmp_path / "h3")
    assert p.returncode == 0, p.stderr
    files = subprocess.run([git, "--git-dir", str(tmp_path / "h3/repositories/gitolite-admin.git"),
                            "ls-tree", "-r", "--name-only", "HEAD"], capture_output=True, text=True,
                           check=True, timeout=30).stdout.split()
    assert files == ["conf/gitolite.conf", "conf/groups.conf", "keydir/alice.pub",
                     "keydir/people/bob@home.pub"]


def test_from_gitolite_refuses_bad_conf(tmp_path, gitolite_admin):
    work = tmp_path / "copy"
    shutil.copytree(gitolite_admin, work, symlinks=True)
    (work / "conf" / "gitolite.conf").write_text("repo x\n    RW+ = alice\n  bogus line\n")
    p = run("init", "--from-gitolite", str(work), home=tmp_path / "h")
    one_line_error(p, "conf/gitolite.conf:3:")
    assert not (tmp_path / "h").exists()


def test_admin_check_validates_keydir(home, tmp_path, gitolite_admin):
    p = run_inproc("admin", "check", home=home)
    assert p.returncode == 0, p.stderr
    assert "1 key of 1 user" in p.stdout and "1 keys" not in p.stdout
    work = tmp_path / "gl"
    shutil.copytree(gitolite_admin, work, symlinks=True)
    conf = str(work / "conf" / "gitolite.conf")
    p = run_inproc("admin", "check", "--conf", conf, home=tmp_path / "none")
    assert p.returncode == 0 and "2 keys of 2 users" in p.stdout, p.stderr
    assert ", 2 groups, " in p.stdout or " group" in p.stdout
    (work / "keydir" / "eve.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBAD\n")
    p = run_inproc("admin", "check", "--conf", conf, home=tmp_path / "none")
    one_line_error(p, "keydir/eve.pub: malformed ssh-ed25519 key")


def test_keydir_user_names_match_gitolite(tmp_path):
    """Gitolite's ssh-authkeys is the oracle: the user it binds each key file to (in
    authorized_keys `command=... gitolite-shell USER`) is the user we derive."""
    from gitserve import keys as keys_mod

    gitolite = require_tool("gitolite")
    git = require_tool("git")
    glhome = tmp_path / "glhome"
    glhome.mkdir()
    env = dict(os.environ, HOME=str(glhome), GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="g",
               GIT_AUTHOR_EMAIL="g@g", GIT_COMMITTER_NAME="g", GIT_COMMITTER_EMAIL="g@g")
    admin_pub = keygen(tmp_path, "admin")
    subprocess.run([gitolite, "setup", "-pk", str(admin_pub)], env=env, check=True,
                   capture_output=True, timeout=120)
    work = tmp_path / "ga"
    subprocess.run([git, "clone", "-q", str(glhome / "repositories/gitolite-admin.git"), str(work)],
                   env=env, check=True, capture_output=True, timeout=60)
    names = ["alice@laptop.pub", "sub/dir/bob.pub", "carol@example.com.pub",
             "dave@example.com@home.pub", "u.name_1-x+y.pub", "e@f@g.pub", "deep/a/b/c/frank@x-y.pub"]
    for i, name in enumerate(names):
        target = work / "keydir" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(keygen(tmp_path, f"k{i}").read_text())
    subprocess.run([git, "add", "-A"], cwd=work, env=env, check=True, timeout=60)
    subprocess.run([git, "commit", "-qm", "keys"], cwd=work, env=env, check=True, timeout=60)
    subprocess.run([gitolite, "push", "-q", "origin", "HEAD"], cwd=work, env=env, check=True,
                   capture_output=True, timeout=120)
    ak = (glhome / ".ssh" / "authorized_keys").read_text()
    import re as re_mod

    theirs = {}
    for line in ak.splitlines():
        m = re_mod.match(r'command="\S+ (\S+)",\S+ (\S+ \S+)', line)
        if m:
            theirs[m.group(2)] = m.group(1)
    for name in names:
        key = " ".join((work / "keydir" / name).read_text().split()[:2])
        assert theirs[key] == keys_mod.check_keyfile_path(name), name


def test_version_says_what_the_greeting_says():
    """`gitserve --version` (a newcomer's first try): the version `ssh git@host info` greets
    with, not typer's "No such option"."""
    from gitserve.ssh.cmd import info

    p = run("--version")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.startswith(info.product_version() + " (Gitolite v3.6.12")
    assert info.engine_version() in p.stdout
