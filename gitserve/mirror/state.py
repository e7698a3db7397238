"""What a repository's own files say about its mirrors (kept beside gl-creator/gl-perms).

- `gitserve-mirror.json`: the repo's mirror sequence. On the master, `seq` counts the
  distinct states pushed to slaves (`refs` is the digest of the last one); on a slave, the
  `seq` of the last push received and who sent it. `gitserve mirror promote` picks the
  survivor with the highest seq: it has the newest state the master sent.
- `gitserve-mirror-SLAVE.json` (master only): what SLAVE was last sent successfully -
  refs digest, meta digest, seq. A slave is behind when these differ from the repo now;
  the catch-up loop compares them, so a restart or a lost queue loses nothing.
- `gl-copy-SLAVE.status` (master only): Gitolite's file for a failed mirror push
  ("TIMESTAMP\\tTID\\tLINE" per line of git's output); removed by the next success.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitserve.acl import wild
from gitserve.fsutil import atomic_write, locked
from gitserve.git import refscan

SEQ_FILE = "gitserve-mirror.json"
HIDDEN = b"refs/gitserve/"


def synced_file(slave: str) -> str:
    return f"gitserve-mirror-{slave}.json"


def status_file(slave: str) -> str:
    return f"gl-copy-{slave}.status"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def refs_digest(repo_dir: Path) -> str:
    """Digest of every ref a slave gets (hidden refs/gitserve/* and HEAD left out)."""
    scan = refscan.scan(str(repo_dir))
    h = hashlib.sha1()
    for name in sorted(scan.refs):
        if name == b"HEAD" or name.startswith(HIDDEN):
            continue
        h.update(name + b" " + scan.refs[name] + b"\n")
    return h.hexdigest()


def lfs_digest(oids: list[str]) -> str:
    """Digest of a repository's LFS object ids (sorted): unchanged means nothing to send."""
    return hashlib.sha1("\n".join(sorted(oids)).encode()).hexdigest()


def visible_refs(repo_dir: Path) -> dict[str, str]:
    scan = refscan.scan(str(repo_dir))
    return {n.decode("utf-8", "surrogateescape"): s.decode() for n, s in scan.refs.items()
            if n != b"HEAD" and not n.startswith(HIDDEN)}


@dataclass(frozen=True)
class Meta:
    """What git push does not carry: wild-repo creator and roles, description, HEAD."""

    creator: str | None
    perms: str
    description: str | None
    head: str | None

    def as_json(self) -> dict[str, Any]:
        return {"creator": self.creator, "perms": self.perms,
                "description": self.description, "head": self.head}

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.as_json(), sort_keys=True).encode()).hexdigest()


def read_meta(repo_dir: Path) -> Meta:
    def text(name: str) -> str | None:
        try:
            return (repo_dir / name).read_text()
        except (OSError, UnicodeDecodeError):
            return None

    head = text("HEAD")
    head_ref = head.strip()[5:].strip() if head and head.startswith("ref: ") else None
    creator = text(wild.CREATOR_FILE)
    return Meta(creator=creator.strip() if creator is not None else None,
                perms=text(wild.PERMS_FILE) or "", description=text("description"),
                head=head_ref)


def read_seq(repo_dir: Path) -> dict[str, Any]:
    return _read_json(repo_dir / SEQ_FILE)


def seq_of(repo_dir: Path) -> int:
    value = read_seq(repo_dir).get("seq", 0)
    return value if isinstance(value, int) else 0


def next_seq(repo_dir: Path, digest: str) -> int:
    """The master's seq for the state with DIGEST: the same number while the refs are the
    same, the next one when they changed (under a lock: slaves are pushed in parallel)."""
    with locked(repo_dir / (SEQ_FILE + ".lock")):
        data = read_seq(repo_dir)
        seq = data.get("seq", 0) if isinstance(data.get("seq"), int) else 0
        if data.get("refs") != digest:
            seq += 1
            atomic_write(repo_dir / SEQ_FILE, json.dumps({"seq": seq, "refs": digest}))
        return seq


def record_received(repo_dir: Path, seq: int, sender: str) -> None:
    """On a slave: the master's push with SEQ is in (never goes backwards)."""
    with locked(repo_dir / (SEQ_FILE + ".lock")):
        if seq > seq_of(repo_dir):
            atomic_write(repo_dir / SEQ_FILE, json.dumps({"seq": seq, "from": sender,
                                                          "at": time.time()}))


def set_seq(repo_dir: Path, seq: int) -> None:
    """After `promote` fetched the newest survivor's state: continue its numbering."""
    with locked(repo_dir / (SEQ_FILE + ".lock")):
        atomic_write(repo_dir / SEQ_FILE, json.dumps({"seq": seq,
                                                      "refs": refs_digest(repo_dir)}))


def read_synced(repo_dir: Path, slave: str) -> dict[str, Any]:
    return _read_json(repo_dir / synced_file(slave))


def record_synced(repo_dir: Path, slave: str, refs: str, meta: str, seq: int,
                  lfs: str = "") -> None:
    atomic_write(repo_dir / synced_file(slave),
                 json.dumps({"refs": refs, "meta": meta, "seq": seq, "lfs": lfs,
                             "at": time.time()}))
    try:
        os.unlink(repo_dir / status_file(slave))
    except FileNotFoundError:
        pass


def record_failure(repo_dir: Path, slave: str, tid: str, output: str) -> None:
    """Gitolite's gl-copy-SLAVE.status: each line of git's output behind a timestamp and
    the transaction id, so `mirror status` shows what went wrong and when."""
    stamp = time.strftime("%Y-%m-%d.%H:%M:%S")
    lines = [line for line in output.splitlines() if line.strip()] or ["(no output)"]
    atomic_write(repo_dir / status_file(slave),
                 "".join(f"{stamp}\t{tid}\t{line}\n" for line in lines))


def failed_slaves(repo_dir: Path) -> list[str]:
    out = []
    for p in sorted(repo_dir.glob("gl-copy-*.status")):
        out.append(p.name[len("gl-copy-"):-len(".status")])
    return out


def status_text(repo: str, repo_dir: Path, slave: str) -> str:
    """Gitolite's print_status for one slave ("" when its last push went well)."""
    try:
        body = (repo_dir / status_file(slave)).read_text()
    except OSError:
        return ""
    return ("----------\n"
            f"WARNING: previous mirror push of repo '{repo}' to host '{slave}' failed, status is:\n"
            f"{body}"
            "----------\n")
