"""Authentication and what an SSH session may do, with the real OpenSSH client."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import struct
import time

import pytest

CONF = """
repo gitolite-admin
    RW+ = admin
repo foo
    RW+ = alice
repo secret
    RW+ = victim
"""


@pytest.fixture(scope="module")
def srv(gitserve_module_factory):
    return gitserve_module_factory(users=("alice", "victim"), conf=CONF)


def _greeting_user(out: str) -> str:
    first = out.splitlines()[0]
    assert first.startswith("hello "), out
    return first.split()[1].rstrip(",")


def test_unknown_key_is_refused(srv):
    stranger = srv.keygen("stranger")
    res = srv.ssh("stranger", "info", key=stranger)
    assert res.returncode == 255
    assert "Permission denied (publickey)" in res.stderr
    clone = srv.git("alice", "clone", srv.url("foo"), str(srv.tmp / "c"), key=stranger, check=False)
    assert clone.returncode != 0


def test_identity_is_the_verified_key_not_the_first_offered(srv):
    # the attacker holds victim's PUBLIC key (public by nature) but not its private key:
    # OpenSSH offers it first, the server says "ok", the client cannot sign and moves on
    only_pub = srv.tmp / "stolen"
    only_pub.mkdir()
    shutil.copy(f"{srv.key_for('victim')}.pub", only_pub / "victim.pub")
    attacker = srv.add_user("mallory")
    res = srv.ssh("mallory", "info", key=only_pub / "victim.pub",
                  extra=("-i", str(attacker)))
    assert res.returncode == 0, res.stderr
    assert _greeting_user(res.stdout) == "mallory"
    assert "secret" not in res.stdout
    stolen = srv.git("mallory", "ls-remote", srv.url("secret"), key=only_pub / "victim.pub",
                     check=False)
    assert stolen.returncode != 0


def _sk_pub_line() -> str:
    def s(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b

    blob = s(b"sk-ssh-ed25519@openssh.com") + s(os.urandom(32)) + s(b"ssh:")
    return "sk-ssh-ed25519@openssh.com " + base64.b64encode(blob).decode() + " token\n"


def test_security_key_offered_first_is_skipped_not_fatal(srv):
    sk_dir = srv.tmp / "sk"
    sk_dir.mkdir()
    (sk_dir / "id_sk.pub").write_text(_sk_pub_line())
    res = srv.ssh("alice", "info", key=sk_dir / "id_sk.pub", extra=("-i", str(srv.key_for("alice"))))
    assert res.returncode == 0, res.stderr
    assert _greeting_user(res.stdout) == "alice"


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa"])
def test_rsa_and_ecdsa_keys_work(srv, key_type):
    key = srv.add_user(f"u{key_type}", key_type=key_type)
    res = srv.ssh(f"u{key_type}", "info", key=key)
    assert res.returncode == 0, res.stderr
    assert _greeting_user(res.stdout) == f"u{key_type}"


def test_no_shell_pty_subsystem_or_forwarding(srv):
    # no shell: a session without a command gets `info` (as Gitolite's forced command does)
    shell = srv.ssh("alice", extra=("-T",))
    assert shell.returncode == 0 and shell.stdout.startswith("hello alice,")
    shell = srv.ssh("alice", input="echo pwned; id\n")
    assert "pwned" not in shell.stdout and "uid=" not in shell.stdout
    pty = srv.ssh("alice", "info", extra=("-tt",))
    assert "PTY allocation request failed" in pty.stderr
    sub = srv.ssh("alice", "sftp", extra=("-s",))
    assert sub.returncode != 0 and "subsystem request failed" in sub.stderr
    tcp = srv.ssh("alice", extra=("-W", "127.0.0.1:22"))
    assert tcp.returncode != 0
    assert "forwarding failed" in tcp.stderr or "prohibited" in tcp.stderr
    remote = srv.ssh("alice", "info", extra=("-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"))
    assert remote.returncode != 0 and "forwarding failed" in remote.stderr


@pytest.mark.parametrize("path", ["../foo", "/../foo", "foo/../../etc", "/etc/passwd",
                                  "~root/foo", "foo/./bar", "-foo"])
def test_path_traversal_refused(srv, path):
    res = srv.ssh("alice", f"git-upload-pack '{path}'")
    assert res.returncode != 0
    assert res.stderr.startswith("FATAL: ")
    assert "\n" == res.stderr[-1]


def test_nul_and_unknown_commands(srv):
    res = srv.ssh("alice", "frobnicate --now")
    assert res.returncode != 0
    assert res.stderr.strip() == "FATAL: unknown git/gitolite command: 'frobnicate --now'"
    res = srv.ssh("alice", "perms foo/../x -l")
    assert res.returncode != 0 and "FATAL:" in res.stderr


def test_unauthenticated_limits_and_banner_timeout(gitserve_factory):
    srv = gitserve_factory(settings={"server": {"max_unauth_per_ip": 2, "banner_timeout": 2.0}},
                           serve_args=("--workers", "0"))  # no builds here
    held = [socket.create_connection((srv.host, srv.port), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection((srv.host, srv.port), timeout=5)
        data = b""
        while True:
            chunk = extra.recv(100)
            if not chunk:
                break
            data += chunk
        extra.close()
        assert data.startswith(b"SSH-2.0-gitserve")  # then closed at once: refused
        # the held ones never sent a banner: dropped after the banner timeout
        for s in held:
            s.settimeout(10)
            got = b""
            start = time.monotonic()
            while True:
                chunk = s.recv(100)
                if not chunk:
                    break
                got += chunk
            assert time.monotonic() - start < 9
    finally:
        for s in held:
            s.close()
    # once they are gone, real clients get in again
    assert srv.ssh("admin", "info").returncode == 0


def test_audit_log_records_decisions(srv):
    srv.git("alice", "ls-remote", srv.url("foo"))
    srv.git("alice", "ls-remote", srv.url("secret"), check=False)
    lines = srv.audit_lines()
    assert any(e["user"] == "alice" and e["repo"] == "foo" and e["result"] == "allowed"
               for e in lines)
    assert any(e["user"] == "alice" and e["repo"] == "secret" and e["result"] == "denied"
               for e in lines)


def test_idle_session_is_closed(gitserve_factory):
    import subprocess

    srv = gitserve_factory(users=("alice",), conf="repo idle\n    RW+ = alice\n",
                           settings={"server": {"idle_timeout": 2.0}},
                           serve_args=("--workers", "0"))  # no builds here
    proc = subprocess.Popen(srv.ssh_command(srv.key_for("alice")) +
                            ["git@127.0.0.1", "git-upload-pack 'idle'"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    start = time.monotonic()
    try:
        proc.wait(20)  # we never answer the advertisement: the server gives up on us
    finally:
        proc.kill()
    assert time.monotonic() - start < 15
