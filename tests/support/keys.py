"""Key material for the admin/keys tests, made by the real ssh-keygen."""

from __future__ import annotations

import base64
import struct
import subprocess
from pathlib import Path

from tests.support.tools import require_tool


def keygen(tmp: Path, name: str, key_type: str = "ed25519", bits: int | None = None,
           comment: str | None = None) -> Path:
    """Create a key pair with ssh-keygen; returns the .pub path."""
    exe = require_tool("ssh-keygen")
    cmd = [exe, "-q", "-t", key_type, "-N", "", "-f", str(tmp / name), "-C", comment or name]
    if bits:
        cmd += ["-b", str(bits)]
    subprocess.run(cmd, check=True, timeout=60)
    return tmp / f"{name}.pub"


def ssh_keygen_fingerprint(pub: Path) -> tuple[int, str, str]:
    """(bits, fingerprint, label) as `ssh-keygen -lf` prints them."""
    exe = require_tool("ssh-keygen")
    out = subprocess.run([exe, "-lf", str(pub)], check=True, capture_output=True, text=True,
                         timeout=30).stdout.split()
    return int(out[0]), out[1], out[-1].strip("()")


def ssh_string(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def sk_ed25519_line(seed: int = 1) -> str:
    t = b"sk-ssh-ed25519@openssh.com"
    blob = ssh_string(t) + ssh_string(bytes([seed]) * 32) + ssh_string(b"ssh:")
    return f"{t.decode()} {base64.b64encode(blob).decode()} yubikey"


# --- a server home made once per session and copied per test (init makes an RSA host key,
# which takes a second; copying a home takes milliseconds) ---------------------------------

import shutil  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def home_template(tmp_path_factory) -> Path:
    from gitserve.cli.init import init_home

    base = tmp_path_factory.mktemp("home-template")
    pub = keygen(base, "alice")
    init_home(base / "home", "alice", pub, author="Init Er <init@example.com>")
    return base


def copy_home(template: Path, dest: Path) -> Path:
    """Copy the template home and alice's key pair into DEST; returns DEST/home."""
    shutil.copytree(template / "home", dest / "home", symlinks=True)
    for f in ("alice", "alice.pub"):
        shutil.copy2(template / f, dest / f)
    return dest / "home"
