"""The SSH server's host keys: every kind ssh-keygen writes loads, RSA without OpenSSL's slow
consistency check of the private numbers, and signs exactly as paramiko's own loader would."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from gitserve.ssh.server import load_host_keys
from tests.support.tools import require_tool


def keygen(path: Path, *args: str) -> Path:
    subprocess.run([require_tool("ssh-keygen"), "-q", "-N", "", "-C", path.name, "-f", str(path), *args],
                   check=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("host_keys")
    keygen(d / "ssh_host_rsa_key", "-t", "rsa", "-b", "3072")          # OpenSSH format
    keygen(d / "ssh_host_rsa_pem_key", "-t", "rsa", "-b", "2048", "-m", "PEM")
    keygen(d / "ssh_host_ed25519_key", "-t", "ed25519")
    keygen(d / "ssh_host_ecdsa_key", "-t", "ecdsa")
    (d / "notes.txt").write_text("not a key\n")
    return d


def test_every_key_loads_ed25519_first_and_junk_is_skipped(keydir: Path) -> None:
    keys = load_host_keys(keydir)
    names = [k.get_name() for k in keys]
    assert names[0] == "ssh-ed25519"
    assert sorted(names) == ["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa", "ssh-rsa"]


@pytest.mark.parametrize("name", ["ssh_host_rsa_key", "ssh_host_rsa_pem_key"])
def test_rsa_host_key_is_the_same_key_and_signs_for_paramikos_copy(keydir: Path, name: str) -> None:
    (ours,) = [k for k in load_host_keys(keydir) if k.get_name() == "ssh-rsa"
               and k.get_bits() == (3072 if name == "ssh_host_rsa_key" else 2048)]
    reference = paramiko.RSAKey.from_private_key_file(str(keydir / name))  # checked by OpenSSL
    assert ours.asbytes() == reference.asbytes()
    for algorithm in ("rsa-sha2-256", "rsa-sha2-512"):
        sig = ours.sign_ssh_data(b"session id", algorithm)
        assert reference.verify_ssh_sig(b"session id", paramiko.Message(sig.asbytes()))


def test_loading_skips_the_slow_check(keydir: Path) -> None:
    """paramiko's loader runs OpenSSL's RSA check (hundreds of ms for 3072 bits); ours must
    not, or every server start pays it."""
    start = time.process_time()
    for _ in range(3):
        load_host_keys(keydir)
    ours = time.process_time() - start
    start = time.process_time()
    for _ in range(3):
        paramiko.RSAKey.from_private_key_file(str(keydir / "ssh_host_rsa_key"))
    theirs = time.process_time() - start
    assert ours < theirs / 3, (ours, theirs)
