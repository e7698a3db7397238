"""Key material for the admin/keys tests, made by the real ssh-keygen."""

from __future__ import annotations

import base64
import struct
import subprocess
from pathlib import Path

from tests.helpers import require_tool


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
