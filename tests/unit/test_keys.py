"""keys.py against the real ssh-keygen: every accepted type, fingerprints, bad input."""

from __future__ import annotations

import base64
import subprocess

import pytest

from gitserve import keys
from tests.support.keys import keygen, sk_ed25519_line, ssh_keygen_fingerprint, ssh_string


@pytest.mark.parametrize(
    "key_type,bits,label",
    [
        ("ed25519", None, "ED25519"),
        ("ecdsa", 256, "ECDSA"),
        ("ecdsa", 384, "ECDSA"),
        ("ecdsa", 521, "ECDSA"),
        ("rsa", 2048, "RSA"),
    ],
)
def test_fingerprint_matches_ssh_keygen(tmp_path, key_type, bits, label):
    pub = keygen(tmp_path, "k", key_type, bits)
    key = keys.parse(pub.read_text())
    kbits, fp, klabel = ssh_keygen_fingerprint(pub)
    assert key.fingerprint == fp
    assert key.label == klabel == label
    assert key.bits == kbits
    assert key.verifiable
    assert key.comment == "k"
    # canonical form round-trips
    assert keys.parse(key.openssh()) == key


def test_sk_key_recognised_but_not_verifiable(tmp_path):
    line = sk_ed25519_line()
    key = keys.parse(line)
    assert key.label == "ED25519-SK" and not key.verifiable
    pub = tmp_path / "sk.pub"
    pub.write_text(line + "\n")
    _, fp, label = ssh_keygen_fingerprint(pub)
    assert key.fingerprint == fp and label == "ED25519-SK"


@pytest.mark.parametrize(
    "line,needle",
    [
        ("", "empty"),
        ("ssh-ed25519", "no key data"),
        ("ssh-ed25519 !!!notbase64!!!", "base64"),
        ("ssh-foo AAAA", "unknown key type"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "DSA"),
        ('command="ls" ssh-ed25519 AAAA', "options"),
        ("ssh-ed25519-cert-v01@openssh.com AAAA", "certificates"),
        ("ssh-ed25519 " + base64.b64encode(ssh_string(b"ssh-rsa") + b"x").decode(), "not ssh-ed25519"),
        ("ssh-ed25519 " + base64.b64encode(ssh_string(b"ssh-ed25519") + ssh_string(b"short")).decode(),
         "malformed"),
        ("ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\xffab").decode(), "malformed"),
        ("ssh-ed25519 AAAA\x00", "NUL"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBAD", "malformed"),  # short key paramiko would pad
    ],
)
def test_bad_keys_rejected_with_reason(line, needle):
    with pytest.raises(keys.InvalidKey) as exc:
        keys.parse(line)
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_ecdsa_point_off_curve_rejected(tmp_path):
    pub = keygen(tmp_path, "e", "ecdsa", 256)
    t, b64, *_ = pub.read_text().split()
    blob = bytearray(base64.b64decode(b64))
    blob[-1] ^= 1
    with pytest.raises(keys.InvalidKey, match="malformed"):
        keys.parse(f"{t} {base64.b64encode(bytes(blob)).decode()}")


def test_short_rsa_rejected(tmp_path):
    # ssh-keygen refuses to make <1024-bit keys, so build the blob by hand
    blob = ssh_string(b"ssh-rsa") + ssh_string(b"\x01\x00\x01") + ssh_string(b"\x00" + b"\xc3" * 64)
    with pytest.raises(keys.InvalidKey, match="too short"):
        keys.parse("ssh-rsa " + base64.b64encode(blob).decode())


def test_file_holds_exactly_one_key(tmp_path):
    a = keygen(tmp_path, "a").read_text()
    b = keygen(tmp_path, "b").read_text()
    assert keys.parse_file_text("# my laptop\n\n" + a + "\n").comment == "a"
    with pytest.raises(keys.InvalidKey, match="one key per file"):
        keys.parse_file_text(a + b)
    with pytest.raises(keys.InvalidKey, match="no key"):
        keys.parse_file_text("\n# nothing\n")


@pytest.mark.parametrize(
    "path,user",
    [
        ("alice.pub", "alice"),
        ("alice@laptop.pub", "alice"),
        ("sub/dir/alice.pub", "alice"),
        ("carol@example.com.pub", "carol@example.com"),
        ("carol@example.com@home.pub", "carol@example.com"),
        ("u.name_1-x+y.pub", "u.name_1-x+y"),
    ],
)
def test_keydir_user(path, user):
    assert keys.check_keyfile_path(path) == user


@pytest.mark.parametrize(
    "path", ["alice", "alice.txt", "../alice.pub", "sub/../alice.pub", "-x.pub", "a b.pub",
             "@all.pub", ".pub", "sub//alice.pub", "al$ice.pub"]
)
def test_bad_keydir_names(path):
    with pytest.raises(keys.InvalidKey):
        keys.check_keyfile_path(path)


def test_private_key_and_ssh2_format_get_a_clear_error(tmp_path):
    pub = keygen(tmp_path, "p")
    private = (tmp_path / "p").read_text()
    with pytest.raises(keys.InvalidKey) as exc:
        keys.parse_file_text(private)
    assert "PRIVATE key" in str(exc.value)
    body = "".join(private.splitlines()[1:-1])
    assert body[:20] not in str(exc.value)
    ssh2 = subprocess.run(["ssh-keygen", "-e", "-f", str(pub)], capture_output=True, text=True,
                          check=True, timeout=30).stdout
    with pytest.raises(keys.InvalidKey, match="ssh-keygen -i"):
        keys.parse_file_text(ssh2)
