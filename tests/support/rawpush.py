"""A receive-pack client speaking raw protocol bytes over the real OpenSSH client.

`git push` refuses to send some commands an attacker can still type by hand (`X X REF`,
a stale old value, ...). This client sends exactly the ref commands it is given, with a pack
made by `git pack-objects`, and returns what the server answered: the report-status lines
(`ok REF` / `ng REF REASON`) and the progress lines (`remote: ...`).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ZERO = "0" * 40


def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


@dataclass
class RawPushResult:
    advertised: dict[str, str] = field(default_factory=dict)  # ref -> sha
    report: list[str] = field(default_factory=list)  # "unpack ok", "ok REF", "ng REF REASON"
    progress: list[str] = field(default_factory=list)  # sideband 2/3 lines
    stderr: str = ""
    returncode: int | None = None

    def status(self, ref: str) -> str | None:
        for line in self.report:
            if line.startswith(("ok ", "ng ")) and line.split(" ", 2)[1] == ref:
                return line
        return None


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def pkt(self) -> bytes | None:
        """The next pkt-line payload; None for a flush-pkt or the end of the data."""
        if self.pos + 4 > len(self.data):
            return None
        size = int(self.data[self.pos:self.pos + 4], 16)
        if size == 0:
            self.pos += 4
            return None
        out = self.data[self.pos + 4:self.pos + size]
        self.pos += size
        return out


def make_pack(work: Path, env: dict[str, str], tips: list[str], exclude: list[str]) -> bytes:
    """A pack of everything reachable from TIPS and not from EXCLUDE (as a client would send)."""
    revs = "".join(f"{t}\n" for t in tips) + "".join(f"^{e}\n" for e in exclude)
    return subprocess.run(["git", "pack-objects", "--stdout", "--revs", "-q"], cwd=work, env=env,
                          input=revs.encode(), capture_output=True, check=True, timeout=60).stdout


def empty_pack() -> bytes:
    """A pack with no objects (what a client sends when the server has everything)."""
    import hashlib
    import struct

    head = b"PACK" + struct.pack(">II", 2, 0)
    return head + hashlib.sha1(head).digest()


def raw_push(srv: Any, user: str, repo: str, commands: list[tuple[str, str, str]], pack: bytes,
             caps: str = "report-status side-band-64k", timeout: float = 120) -> RawPushResult:
    """Send COMMANDS (old, new, ref) and PACK to `git-receive-pack REPO` as USER over ssh."""
    argv = srv.ssh_command(srv.key_for(user)) + [f"git@{srv.host}", f"git-receive-pack '{repo}'"]
    body = b""
    for i, (old, new, ref) in enumerate(commands):
        line = f"{old} {new} {ref}".encode()
        body += pkt(line + (b"\0" + caps.encode() if i == 0 else b"") + b"\n")
    body += b"0000" + pack
    # the advertisement is read only after the whole request went out: receive-pack reads
    # our commands after it sent its refs, and the pipes hold both comfortably
    proc = subprocess.run(argv, input=body, capture_output=True, timeout=timeout, check=False,
                          env=srv.client_env(user))
    result = RawPushResult(stderr=proc.stderr.decode(errors="replace"), returncode=proc.returncode)
    reader = _Reader(proc.stdout)
    while (line := reader.pkt()) is not None:  # advertisement
        sha, _, rest = line.partition(b" ")
        name = rest.split(b"\0", 1)[0].strip().decode(errors="replace")
        result.advertised[name] = sha.decode()
    if "side-band" not in caps:
        while (line := reader.pkt()) is not None:
            result.report.append(line.decode(errors="replace").rstrip("\n"))
        return result
    report = b""
    while True:
        line = reader.pkt()
        if line is None:
            break
        band, payload = line[:1], line[1:]
        if band == b"\x01":
            report += payload
        elif band in (b"\x02", b"\x03"):
            result.progress += [p.strip() for p in payload.decode(errors="replace").replace("\r", "\n").split("\n")
                                if p.strip()]
    inner = _Reader(report)
    while (line := inner.pkt()) is not None:
        result.report.append(line.decode(errors="replace").rstrip("\n"))
    return result
