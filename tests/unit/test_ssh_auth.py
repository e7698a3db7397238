"""Key authentication of the SSH server, driven in-process with a paramiko client.

The OpenSSH e2e tests cover the real client; here a hostile client does what OpenSSH never
would: claims the victim's public key with a forged signature, then logs in with its own.
"""

from __future__ import annotations

import socket

import paramiko
import pytest

from gitserve.settings import Settings
from gitserve.ssh.server import SSHServer


@pytest.fixture
def server(tmp_path):
    victim = paramiko.Ed25519Key.from_private_key_file(_keygen(tmp_path, "victim"))
    mallory = paramiko.Ed25519Key.from_private_key_file(_keygen(tmp_path, "mallory"))
    users = {victim.asbytes(): "victim", mallory.asbytes(): "mallory"}
    host = paramiko.Ed25519Key.from_private_key_file(_keygen(tmp_path, "host"))

    def run(chan, command, user, iface) -> int:
        chan.sendall(f"{user} ran {command}\n".encode())
        return 0

    settings = Settings(home=tmp_path)
    settings.server.auth_timeout = 5.0
    srv = SSHServer(settings, users.get, run, host_keys=[host])
    srv.bind("127.0.0.1", 0)
    srv.start()
    yield srv, victim, mallory
    srv.stop()


def _keygen(tmp_path, name: str) -> str:
    import subprocess

    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return str(path)


class ForgedKey(paramiko.PKey):
    """Presents VICTIM's public key but signs with someone else's private key."""

    def __init__(self, victim: paramiko.Ed25519Key, signer: paramiko.Ed25519Key) -> None:
        self.victim, self.signer = victim, signer
        self.public_blob = None

    def asbytes(self) -> bytes:
        return self.victim.asbytes()

    def get_name(self) -> str:
        return "ssh-ed25519"

    @property
    def algorithm_name(self) -> str:
        return "ED25519"

    def get_bits(self) -> int:
        return 256

    def can_sign(self) -> bool:
        return True

    def sign_ssh_data(self, data, algorithm=None):  # noqa: ANN001
        return self.signer.sign_ssh_data(data)


def _run(transport: paramiko.Transport, command: str) -> str:
    chan = transport.open_session()
    chan.exec_command(command)
    out = b""
    while True:
        chunk = chan.recv(1024)
        if not chunk:
            break
        out += chunk
    status = chan.recv_exit_status()
    assert status == 0
    return out.decode()


def test_forged_signature_fails_and_the_next_key_decides_identity(server):
    srv, victim, mallory = server
    sock = socket.create_connection(srv.address, timeout=10)
    t = paramiko.Transport(sock)
    try:
        t.start_client(timeout=10)
        with pytest.raises(paramiko.AuthenticationException):
            t.auth_publickey("git", ForgedKey(victim, mallory))
        t.auth_publickey("git", mallory)
        assert _run(t, "info") == "mallory ran info\n"
    finally:
        t.close()


def test_unknown_key_refused_and_known_key_accepted(server, tmp_path):
    srv, victim, _ = server
    stranger = paramiko.Ed25519Key.from_private_key_file(_keygen(tmp_path, "stranger"))
    sock = socket.create_connection(srv.address, timeout=10)
    t = paramiko.Transport(sock)
    try:
        t.start_client(timeout=10)
        with pytest.raises(paramiko.AuthenticationException):
            t.auth_publickey("git", stranger)
        with pytest.raises(paramiko.BadAuthenticationType):
            t.auth_password("git", "hunter2")
        t.auth_publickey("git", victim)
        assert _run(t, "whatever") == "victim ran whatever\n"
    finally:
        t.close()


def test_no_channel_before_login_and_no_port_forwarding(server):
    srv, victim, _ = server
    sock = socket.create_connection(srv.address, timeout=10)
    t = paramiko.Transport(sock)
    try:
        t.start_client(timeout=10)
        t.auth_publickey("git", victim)
        with pytest.raises(paramiko.ChannelException):
            t.open_channel("direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 5555), timeout=5)
        with pytest.raises(paramiko.SSHException):
            t.request_port_forward("127.0.0.1", 0)
        chan = t.open_session()
        assert not _try(lambda: chan.get_pty())
        assert not _try(lambda: chan.invoke_subsystem("sftp"))
    finally:
        t.close()


def _try(fn) -> bool:  # noqa: ANN001
    try:
        fn()
        return True
    except paramiko.SSHException:
        return False
