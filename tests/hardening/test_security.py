"""Security review as tests: forged authentication, paths that try to leave the repositories
directory, builds that go after other repos' or the server's secrets, non-admins trying to
change what the server runs."""

from __future__ import annotations

import os
import subprocess

import paramiko
import pytest

from tests.hardening import floodkit

pytestmark = pytest.mark.timeout(300)

CONF = """
repo gitolite-admin
    RW+ = admin
repo foo
    RW+ = alice
    option build.enable = 1
repo secret
    RW+ = bob
repo pub
    R   = alice
repo team/x
    R   = alice
repo a
    RW+ = alice
    option build.enable = 1
repo b
    RW+ = bob
    option build.enable = 1
"""


@pytest.fixture(scope="module")
def srv(gitserve_module_factory):
    s = gitserve_module_factory(users=("alice", "bob"), conf=CONF)
    work = s.clone("bob", "secret")
    s.commit("bob", work, "TOP-SECRET.txt", "the plans\n")
    s.git("bob", "push", "-q", "origin", "HEAD:main", cwd=work)
    return s


def secret_sha(srv) -> str:
    return subprocess.run(["git", "--git-dir", str(srv.repo_path("secret")), "rev-parse", "main"],
                          capture_output=True, text=True, check=True).stdout.strip()


class ForgedKey(paramiko.PKey):
    """Offers VICTIM's public key blob but signs with the attacker's private key."""

    def __init__(self, victim: paramiko.PKey, signer: paramiko.PKey) -> None:
        self.victim, self.signer = victim, signer
        self.public_blob = None

    def asbytes(self) -> bytes:
        return self.victim.asbytes()

    def get_name(self) -> str:
        return self.victim.get_name()

    @property
    def algorithm_name(self) -> str:  # paramiko asks this for the algorithm
        return self.victim.algorithm_name

    def sign_ssh_data(self, data: bytes, algorithm: str | None = None):  # noqa: ANN201
        return self.signer.sign_ssh_data(data, algorithm)

    def can_sign(self) -> bool:
        return True


def test_someone_elses_public_key_with_my_signature_is_refused(srv):
    victim_pub = paramiko.Ed25519Key(filename=str(srv.key_for("bob")))  # the public half is public
    attacker = floodkit.load_key(srv.keygen("eve"))
    t = paramiko.Transport(floodkit.connect_from("127.0.5.1", srv.host, srv.port))
    t.start_client(timeout=20)
    try:
        with pytest.raises(paramiko.AuthenticationException):
            t.auth_publickey("git", ForgedKey(victim_pub, attacker))
        assert not t.is_authenticated()
    finally:
        t.close()
    # and a known user who offers bob's key first still ends up as themselves (OpenSSH)
    res = srv.ssh("alice", "info", extra=("-o", f"IdentityFile={srv.key_for('bob')}.pub"))
    assert res.stdout.startswith("hello alice,"), res.stdout + res.stderr


def test_symlinks_out_of_the_repositories_dir_are_refused(srv, tmp_path):
    outside = tmp_path / "outside.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(srv.repo_path("secret")), str(outside)],
                   check=True, timeout=60)
    pub = srv.repo_path("pub")
    subprocess.run(["rm", "-rf", str(pub)], check=True)
    pub.symlink_to(outside)  # an admin's mistake, or a planted link
    team = srv.home / "repositories" / "team"
    subprocess.run(["rm", "-rf", str(team)], check=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(outside, tmp_path / "elsewhere" / "x.git")
    team.symlink_to(tmp_path / "elsewhere")
    for repo in ("pub", "team/x"):
        r = srv.git("alice", "ls-remote", srv.url(repo), check=False)
        assert r.returncode != 0 and secret_sha(srv) not in r.stdout, r.stdout
        assert "FATAL" in r.stderr, r.stderr


@pytest.mark.parametrize("path", [
    "'/foo.git/../secret.git'", "'foo/../secret'", "'foo.git/../secret'", "'./secret'",
    "'%2e%2e/secret'", "'foo/%2e%2e/secret'", "'/secret\\n'", "'secret' 'foo'",
    "'repositories/secret'", "'~bob/secret'", "'foo\\x00/../secret'", "'//secret'",
])
def test_crafted_paths_never_reach_another_repo(srv, path):
    res = srv.ssh("alice", f"git-upload-pack {path}")
    assert res.returncode != 0
    assert secret_sha(srv) not in res.stdout
    assert res.stderr.startswith("FATAL: ") or "fatal" in res.stderr.lower(), res.stderr


def set_secret(srv, repo: str, name: str, value: str) -> None:
    srv.admin_cli("admin", "set-secret", repo, name, input=value)


def push_build(srv, user: str, repo: str, script: str) -> str:
    work = srv.clone(user, repo)
    p = work / ".gitserve" / "build"
    p.parent.mkdir()
    p.write_text(script)
    p.chmod(0o755)
    srv.git(user, "add", "-A", cwd=work)
    srv.git(user, "commit", "-q", "-m", "build", cwd=work)
    return srv.git(user, "push", "origin", "HEAD:main", cwd=work, timeout=180).stderr


def test_a_build_sees_only_its_own_repos_secrets(srv):
    set_secret(srv, "a", "A_TOKEN", "alpha-value-1234")
    set_secret(srv, "b", "B_TOKEN", "bravo-value-5678")
    key_hex = (srv.home / "secrets.key").read_bytes().hex()
    out = push_build(srv, "alice", "a", "#!/bin/sh\nenv\necho A=$A_TOKEN\necho B=$B_TOKEN\n"
                                        "cat \"$GITSERVE_OUTPUT/../../../secrets/b\"* 2>&1 | head -3\n")
    assert "remote: A=***" in out and "alpha-value-1234" not in out, out
    assert "remote: B=" in out and "bravo-value-5678" not in out and "B_TOKEN=" not in out
    assert key_hex not in out and "GITSERVE_SECRETS" not in out and "SECRETS_KEY" not in out
    assert " passed in " in out


def test_a_local_build_cannot_read_the_server_home(srv):
    key_hex = (srv.home / "secrets.key").read_bytes().hex()
    out = push_build(srv, "alice", "foo", f"#!/bin/sh\nod -An -tx1 {srv.home}/secrets.key "
                                          "| tr -d ' \\n'; echo\n")
    assert key_hex not in out.replace("remote: ", "").replace("\n", "")


def test_non_admin_cannot_change_what_the_server_runs(srv):
    admin_tip = subprocess.run(["git", "--git-dir", str(srv.repo_path("gitolite-admin")),
                                "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    # alice may not push the admin repo at all (reading it is denied too)
    r = srv.git("alice", "clone", srv.url("gitolite-admin"), str(srv.tmp / "ga"), check=False)
    assert r.returncode != 0 and "DENIED" in r.stderr
    # a conf with a hook in her own repo is just a file
    work = srv.clone("alice", "foo")
    srv.commit("alice", work, "conf/gitolite.conf",
               "repo foo\n    RW+ = alice\n    option hook.post-receive = ../../bin/sh\n")
    r = srv.git("alice", "push", "origin", "HEAD:main", cwd=work)
    assert "hook" not in r.stderr
    assert subprocess.run(["git", "--git-dir", str(srv.repo_path("gitolite-admin")), "rev-parse",
                           "HEAD"], capture_output=True, text=True).stdout == admin_tip
    # a hook name that leaves HOME/hooks is refused, even from the admin's conf
    from gitserve import adminrepo

    hooked = CONF + "repo hooked\n    RW+ = alice\n    option hook.post-receive = ../secrets.key\n"
    with pytest.raises(adminrepo.AdminError, match="invalid hook name"):
        adminrepo.set_conf(srv.settings, hooked, "test")
