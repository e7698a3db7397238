"""Clients for floods: raw TCP sockets from chosen loopback addresses (so per-IP limits can
be exercised from one machine: all of 127.0.0.0/8 is this host) and paramiko clients that
authenticate and then sit there."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import paramiko


def connect_from(src: str, host: str, port: int, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect((host, port))
    return s


def is_closed_by_peer(s: socket.socket, wait: float = 0.0) -> bool:
    """True once the server closed S (EOF or reset); data it sent (its banner) is skipped."""
    s.settimeout(max(wait, 0.001))
    deadline = time.monotonic() + wait
    while True:
        try:
            chunk = s.recv(4096)
        except (socket.timeout, BlockingIOError):
            if time.monotonic() >= deadline:
                return False
            continue
        except OSError:
            return True
        if not chunk:
            return True


def load_key(path: Path) -> paramiko.PKey:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(str(path))
        except (paramiko.SSHException, ValueError):
            continue
    raise ValueError(f"cannot load {path}")


def authenticated_transport(host: str, port: int, key: paramiko.PKey, src: str = "127.0.0.1",
                            timeout: float = 20.0) -> paramiko.Transport:
    """An SSH connection that authenticated as KEY's user and opens no channel."""
    t = paramiko.Transport(connect_from(src, host, port, timeout))
    t.banner_timeout = t.handshake_timeout = t.auth_timeout = timeout
    t.start_client(timeout=timeout)
    t.auth_publickey("git", key)
    assert t.is_authenticated()
    return t


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0
