"""gitolite_import + `init --repositories/--move`: what is brought, what is dropped, and that a
failed import hands everything back. The site is laid out as Gitolite lays it out (made with
the real git; the e2e test does the same with Debian's gitolite3 itself)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gitserve import adminrepo, gitolite_import, gitolite_rc
from gitserve.cli.init import init_home
from gitserve import settings as settings_mod
from gitserve.settings import Settings
from tests.support.keys import keygen
from tests.support.tools import require_tool

CONF = """repo gitolite-admin
    RW+ = alice
repo foo
    RW+ = alice
repo wild/CREATOR/..*
    C = @all
    RW+ = CREATOR
    R = READERS
"""


def git(*args: str, cwd: Path | None = None) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="g", GIT_AUTHOR_EMAIL="g@g", GIT_COMMITTER_NAME="g",
               GIT_COMMITTER_EMAIL="g@g", GIT_CONFIG_NOSYSTEM="1", HOME=str(cwd or "/"))
    return subprocess.run([require_tool("git"), *args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True, timeout=60).stdout.strip()


def gitolite_like_site(tmp: Path, conf: str = CONF) -> Path:
    """HOME with ~/.gitolite and ~/repositories as Gitolite leaves them."""
    home = tmp / "glhome"
    common = home / ".gitolite" / "hooks" / "common"
    common.mkdir(parents=True)
    (common / "update").write_text("#!/usr/bin/perl\n# gitolite's update hook\n")
    repos = home / "repositories"
    work = tmp / "admin-work"
    git("init", "-q", "-b", "master", str(work))
    (work / "conf").mkdir()
    (work / "keydir").mkdir()
    (work / "conf" / "gitolite.conf").write_text("repo gitolite-admin\n    RW+ = alice\n")
    (work / "keydir" / "alice.pub").write_text(keygen(tmp, "alice").read_text())
    git("add", "-A", cwd=work)
    git("commit", "-qm", "gitolite setup -pk alice.pub", cwd=work)
    (work / "conf" / "gitolite.conf").write_text(conf)
    git("commit", "-qam", "repos", cwd=work)
    git("init", "-q", "--bare", str(repos / "gitolite-admin.git"))
    git("push", "-q", str(repos / "gitolite-admin.git"), "master", "master:refs/heads/wip", cwd=work)
    for name in ("foo", "wild/alice/p"):
        bare = repos / f"{name}.git"
        git("init", "-q", "--bare", str(bare))
        (bare / "hooks" / "update").symlink_to(common / "update")
        (bare / "gl-conf").write_text("%one_repo = ();\n")
        git("push", "-q", str(bare), "master", cwd=work)
    wild = repos / "wild/alice/p.git"
    (wild / "gl-creator").write_text("alice")
    (wild / "gl-perms").write_text("READERS bob\n")
    (wild / "description").write_text("Alice's p")
    (repos / "foo.git" / "hooks" / "post-receive").write_text("#!/bin/sh\necho mine\n")
    return home


def test_copy_brings_repos_without_gitolite_files_and_the_admin_history(tmp_path):
    site = gitolite_like_site(tmp_path)
    lines = init_home(tmp_path / "home", from_gitolite=site, author="t <t@t>")
    s = Settings(home=tmp_path / "home")
    assert any("copied 2 repositories" in x for x in lines)
    assert any("foo: hooks/post-receive is not run by gitserve" in x for x in lines)
    foo, wild = s.repo_path("foo"), s.repo_path("wild/alice/p")
    assert not (foo / "hooks" / "update").is_symlink() and not (foo / "gl-conf").exists()
    assert (foo / "hooks" / "post-receive").exists()  # not Gitolite's: kept, with a note
    assert (wild / "gl-creator").read_text() == "alice"
    assert (wild / "gl-perms").read_text() == "READERS bob\n"
    assert (wild / "description").read_text() == "Alice's p"
    assert (site / "repositories/foo.git/hooks/update").is_symlink()  # the source is untouched
    gd = str(s.admin_repo)
    assert git("--git-dir", gd, "symbolic-ref", "HEAD") == "refs/heads/master"
    src = str(site / "repositories/gitolite-admin.git")
    assert git("--git-dir", gd, "rev-list", "master") == git("--git-dir", src, "rev-list", "master")
    assert git("--git-dir", gd, "rev-parse", "wip") == git("--git-dir", src, "rev-parse", "wip")
    assert adminrepo.current(s).rules.repo_names() == ["foo", "gitolite-admin"]


def test_a_checkout_that_differs_from_the_server_adds_one_commit(tmp_path):
    site = gitolite_like_site(tmp_path)
    checkout = tmp_path / "co"
    git("clone", "-q", str(site / "repositories/gitolite-admin.git"), str(checkout))
    (checkout / "conf" / "gitolite.conf").write_text(CONF + "repo local-only\n    RW = alice\n")
    init_home(tmp_path / "home", from_gitolite=checkout, repositories=site / "repositories",
              author="Ada <ada@x>")
    s = Settings(home=tmp_path / "home")
    gd = str(s.admin_repo)
    server_tip = git("--git-dir", str(site / "repositories/gitolite-admin.git"), "rev-parse", "master")
    assert git("--git-dir", gd, "rev-parse", "master^") == server_tip
    assert git("--git-dir", gd, "log", "-1", "--format=%an %s", "master").startswith("Ada Import")
    assert "local-only" in adminrepo.current(s).rules.repo_names()


def test_a_failed_move_puts_every_repository_back(tmp_path, monkeypatch):
    site = gitolite_like_site(tmp_path)
    before = sorted(str(p.relative_to(site)) for p in site.rglob("*"))

    def broken(settings):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(adminrepo, "compile", broken)
    with pytest.raises(OSError):
        init_home(tmp_path / "home", from_gitolite=site, move=True, author="t <t@t>")
    assert not (tmp_path / "home").exists()
    assert sorted(str(p.relative_to(site)) for p in site.rglob("*")) == before
    assert (site / "repositories/foo.git/hooks/update").is_symlink()  # Gitolite can still serve it


def test_a_conf_gitserve_refuses_moves_nothing(tmp_path):
    site = gitolite_like_site(tmp_path, conf=CONF + "repo bad\n    RW+ alice\n")
    with pytest.raises(adminrepo.AdminError, match=r"conf/gitolite.conf:\d+: syntax error"):
        init_home(tmp_path / "home", from_gitolite=site, move=True, author="t <t@t>")
    assert (site / "repositories/foo.git").is_dir() and not (tmp_path / "home").exists()


def test_locate_says_what_it_cannot_use(tmp_path):
    with pytest.raises(gitolite_import.GitoliteImportError, match="not a Gitolite home"):
        gitolite_import.locate(tmp_path, None)
    with pytest.raises(gitolite_import.GitoliteImportError, match="no such directory"):
        gitolite_import.locate(None, tmp_path / "nope")
    plans, warnings = gitolite_import.plan_repositories(gitolite_like_site(tmp_path) / "repositories")
    assert [p.name for p in plans] == ["foo", "wild/alice/p"] and warnings == []


def test_rc_settings_carry_over_and_what_does_not_is_named(tmp_path):
    """Gitolite's own default rc (what `gitolite setup` writes) loses nothing; ENABLE'd commands
    and GIT_CONFIG_KEYS carry over (Perl evaluates the rc, as Gitolite does); the rest is named."""
    require_tool("gitolite")
    require_tool("perl")
    rc = tmp_path / ".gitolite.rc"
    rc.write_text(Path("/usr/share/gitolite3/lib/Gitolite/Rc.pm").read_text().split("__DATA__", 1)[1])
    assert gitolite_import.rc_warnings(rc) == []  # Gitolite's default rc: nothing lost
    text = rc.read_text().replace("GIT_CONFIG_KEYS                 =>  ''",
                                  "GIT_CONFIG_KEYS                 =>  'gitweb\\..*'")
    text = text.replace("WRITERS                     =>  1,", "WRITERS => 1,\n        OWNERS => 1,")
    text = text.replace("'writable',", "'writable',\n            'D', 'fork', 'sskm', 'refex-expr',", 1)
    text = text.replace("# LOCAL_CODE                =>  \"$ENV{HOME}/local\",",
                        "LOCAL_CODE                =>  \"$ENV{HOME}/local\",")
    rc.write_text(text)
    got = gitolite_import.rc_warnings(rc)
    assert len(got) == 2, got
    assert "roles OWNERS" in got[0] and got[1].endswith("does not have: sskm")
    site = gitolite_rc.read_site(tmp_path)
    assert site.commands == ["D", "fork"] and site.git_config_keys == "gitweb\\..*"
    assert site.refex_expr and not gitolite_rc.carry({"ENABLE": ["help"]}, rc).refex_expr
    assert site.local_code == tmp_path / "local"
    # without Perl the same settings are read by hand
    assert gitolite_rc.carry(gitolite_rc._regex_read(text, tmp_path), rc).commands == ["D", "fork"]


def test_the_rc_commands_are_gitserves_optional_commands():
    from gitserve.ssh.cmd import builtin

    assert gitolite_rc.GITSERVE_COMMANDS == tuple(c.name for c in builtin.optional_commands())


def test_takeover_sshd_keeps_the_hosts_keys_and_a_failing_check_imports_nothing(tmp_path):
    """--takeover-sshd: the sshd's host keys (ecdsa too) are the server's, so clients see no
    changed host key; an import whose result would fail `admin check` leaves nothing."""
    from gitserve.ssh.server import load_host_keys

    site = gitolite_like_site(tmp_path)
    etc = tmp_path / "etc-ssh"
    etc.mkdir()
    for kind in ("ed25519", "ecdsa", "rsa"):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f",
                        str(etc / f"ssh_host_{kind}_key")], check=True, timeout=60)
    home = tmp_path / "home"
    init_home(home, from_gitolite=site, author="t <t@t>", sshd_host_keys=etc)
    for kind in ("ed25519", "ecdsa", "rsa"):
        name = f"ssh_host_{kind}_key"
        assert (home / "host_keys" / name).read_bytes() == (etc / name).read_bytes()
        assert (home / "host_keys" / name).stat().st_mode & 0o777 == 0o600
    assert sorted(k.get_name() for k in load_host_keys(home / "host_keys")) == [
        "ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"]
    # a conf option naming a hook the site does not have: admin check fails, nothing made
    bad = gitolite_like_site(tmp_path / "bad", conf=CONF + "repo foo\n    option hook.post-receive = gone\n")
    with pytest.raises(adminrepo.AdminError, match="admin check.*no executable hook 'gone'"):
        init_home(tmp_path / "home2", from_gitolite=bad, author="t <t@t>")
    assert not (tmp_path / "home2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".home2.init-")]


def test_local_code_hooks_vrefs_and_commands_come_along(tmp_path):
    site = gitolite_like_site(tmp_path)
    local = site / "local"
    for rel in ("hooks/repo-specific/announce", "VREF/NOTXT", "commands/hello",
                "triggers/mine"):
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_text("#!/bin/sh\nexit 0\n")
        (local / rel).chmod(0o755)
    (site / ".gitolite.rc").write_text(
        '%RC = (\n  LOCAL_CODE => "$ENV{HOME}/local",\n  GIT_CONFIG_KEYS => \'gitweb\\..*\',\n'
        "  ENABLE => ['help', 'info', 'D', 'hello', 'sskm'],\n);\n1;\n")
    lines = init_home(tmp_path / "home", from_gitolite=site, author="t <t@t>")
    home = tmp_path / "home"
    for rel in ("hooks/announce", "vrefs/NOTXT", "commands/hello"):
        assert os.access(home / rel, os.X_OK), rel
    s = settings_mod.load(home)
    assert (s.server.commands, s.server.git_config_keys) == ("D hello", "gitweb\\..*")
    assert s.server.default_branch == "master"
    text = "\n".join(lines)
    assert "triggers/mine" in text and "sskm" in text and "admin check: ok" in text
