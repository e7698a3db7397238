"""The git route for a push's pack (git/indexpack.py): git index-pack into the quarantine,
git's connectivity check, blob sizes from object headers; and receive-pack on top of it
(raw protocol bytes, the real git binary): a bad pack changes nothing, check #2 sees the
quarantined objects before they move in, index-pack's progress reaches the client."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
from dulwich.protocol import pkt_line
from dulwich.repo import Repo

from gitserve.git import indexpack
from gitserve.git import quarantine as quarantine_mod
from gitserve.git.indexpack import GitQuarantine
from gitserve.git.quarantine import BadPack, human_bytes
from gitserve.git.receive import PushLimits, ReceivePack
from gitserve.git.repo import SingleRepoBackend
from gitserve.git.sideband import ChannelReader, SidebandProtocol
from tests.support.tools import require_tool

ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
           GIT_COMMITTER_EMAIL="t@e", GIT_CONFIG_NOSYSTEM="1", HOME="/nonexistent")
ZERO = "0" * 40


def git(cwd: Path, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, input=input, capture_output=True,
                          check=check, timeout=60).stdout


@pytest.fixture
def repos(tmp_path):
    require_tool("git")
    src = tmp_path / "src"
    git(tmp_path, "init", "-q", "-b", "main", str(src))
    text = "".join(f"line {i} of a file that changes a little each commit\n" for i in range(3000))
    shas = []
    for n in range(5):
        (src / "doc.txt").write_text(text + f"edit {n}\n" * (n + 1))
        (src / f"bin{n}.dat").write_bytes(os.urandom(40_000))
        git(src, "add", "-A")
        git(src, "commit", "-q", "-m", f"c{n}")
        shas.append(git(src, "rev-parse", "HEAD").decode().strip())
    dst = tmp_path / "dst.git"
    git(tmp_path, "init", "-q", "--bare", str(dst))
    return src, dst, shas


def pack(src: Path, revs: str, *flags: str) -> bytes:
    return git(src, "pack-objects", "--stdout", "--revs", "-q", *flags, input=revs.encode())


@pytest.fixture(autouse=True)
def always_index_pack(monkeypatch):
    """These packs are small: take the index-pack route for them all the same."""
    monkeypatch.setattr(indexpack, "UNPACK_LIMIT", 0)


def receive(dst: Path, data: bytes, **limits) -> GitQuarantine:
    q = GitQuarantine(dst / "objects")
    buf = io.BytesIO(data)
    try:
        q.receive(buf.read, buf.read, limits.get("max_push_bytes"), limits.get("max_blob_bytes", 0))
        q.check(limits.get("max_blob_bytes", 0))
    except BaseException:
        q.close()
        raise
    return q


def in_repo(dst: Path, sha: str) -> bool:
    return subprocess.run(["git", "--git-dir", str(dst), "cat-file", "-e", sha],
                          capture_output=True, check=False).returncode == 0


def no_quarantine(dst: Path) -> bool:
    return not list((dst / "objects").glob("incoming-*"))


def test_thin_pack_is_completed_from_the_repository(repos):
    src, dst, shas = repos
    q = receive(dst, pack(src, shas[2] + "\n"))
    assert q.missing([shas[2]]) == set()
    q.migrate()
    q.close()
    thin = pack(src, f"{shas[-1]}\n^{shas[2]}\n", "--thin", "--delta-base-offset")
    q = receive(dst, thin)
    try:
        assert not in_repo(dst, shas[-1])  # still quarantined
        assert q.missing([shas[-1]]) == set()
        q.migrate()
    finally:
        q.close()
    assert in_repo(dst, shas[-1]) and no_quarantine(dst)
    git(dst, "update-ref", "refs/heads/main", shas[-1])
    assert subprocess.run(["git", "--git-dir", str(dst), "fsck", "--strict"], capture_output=True,
                          check=False).returncode == 0


def test_corrupt_pack_is_refused_and_leaves_nothing(repos):
    src, dst, shas = repos
    data = bytearray(pack(src, shas[-1] + "\n"))
    data[len(data) // 2] ^= 0x55
    with pytest.raises(BadPack):
        receive(dst, bytes(data))
    truncated = pack(src, shas[-1] + "\n")[:-100]
    with pytest.raises(BadPack):
        receive(dst, truncated)
    with pytest.raises(BadPack, match="not a pack"):
        receive(dst, b"JUNKJUNKJUNKJUNK")
    assert no_quarantine(dst) and not list((dst / "objects" / "pack").iterdir())


def test_missing_objects_and_connectivity(repos):
    src, dst, shas = repos
    # the last commit alone (not thin): its parent is nowhere, so --strict refuses the pack
    with pytest.raises(BadPack, match="expected object|missing|not received"):
        receive(dst, pack(src, f"{shas[-1]}\n^{shas[-2]}\n"))
    q = receive(dst, pack(src, shas[1] + "\n"))
    try:
        # a tip that is nowhere, and a tip that is in the pack
        nowhere = "1234567890" * 4
        assert q.missing([shas[1], nowhere]) == {nowhere}
        assert q.missing([shas[3]]) == {shas[3]}
    finally:
        q.close()


def test_receive_fsck_settings_reach_index_pack_as_native_receive_pack(repos, tmp_path):
    """A commit without an author email: refused by --strict as git's receive-pack refuses it,
    accepted once the repo says `receive.fsck.missingEmail = ignore`, exactly when native
    `git receive-pack` (the oracle, over a local push) accepts it. Before, the repo's
    receive.fsck.* never reached index-pack: gitserve refused what git accepted."""
    src, dst, shas = repos
    tree = git(src, "rev-parse", "HEAD^{tree}").decode().strip()
    body = (f"tree {tree}\nparent {shas[-1]}\nauthor nomail 1700000000 +0000\n"
            f"committer t <t@e> 1700000000 +0000\n\nno email\n").encode()
    bad = git(src, "hash-object", "-t", "commit", "--literally", "-w", "--stdin",
              input=body).decode().strip()
    whole = pack(src, bad + "\n")
    native = tmp_path / "native.git"
    git(tmp_path, "init", "-q", "--bare", str(native))
    git(native, "config", "receive.fsckObjects", "true")

    def native_accepts() -> bool:
        return subprocess.run(["git", "push", "-q", str(native), f"{bad}:refs/heads/x"],
                              cwd=src, env=ENV, capture_output=True, timeout=60).returncode == 0

    assert not native_accepts()
    with pytest.raises(BadPack, match="missingEmail"):
        receive(dst, whole)
    assert no_quarantine(dst)
    for repo in (dst, native):
        git(repo, "config", "receive.fsck.missingEmail", "ignore")
        git(repo, "config", "receive.fsck.bogus", "x,y=error")  # never passed on
    assert native_accepts()
    q = receive(dst, whole)
    try:
        q.migrate()
    finally:
        q.close()
    assert in_repo(dst, bad)
    assert indexpack.fsck_msg_types(dst / "config") == "=missingEmail=ignore"


def test_max_push_bytes_and_max_blob_bytes(repos):
    src, dst, shas = repos
    data = pack(src, shas[-1] + "\n")
    with pytest.raises(BadPack, match=r"larger than this server's limit of 10 KiB \(max_push_bytes\)"):
        receive(dst, data, max_push_bytes=10 * 1024)
    # the biggest blob is doc.txt at the tip, stored as a delta of a few hundred bytes
    biggest = int(git(src, "cat-file", "-s", f"{shas[-1]}:doc.txt"))
    blob = git(src, "rev-parse", f"{shas[-1]}:doc.txt").decode().strip()
    with pytest.raises(BadPack, match=rf"holds a blob of {human_bytes(biggest)}, over this "
                                      rf"server's limit of 39 KiB \(max_blob_bytes\): {blob}"):
        receive(dst, data, max_blob_bytes=39 * 1024)
    q = receive(dst, data, max_push_bytes=len(data), max_blob_bytes=biggest)
    q.close()
    assert no_quarantine(dst) and not in_repo(dst, shas[-1])


# --- receive-pack on the git route, raw protocol bytes ----------------------------------

def push_bytes(commands: list[tuple[str, str, str]], data: bytes,
               caps: str = "report-status side-band-64k") -> bytes:
    out = b""
    for i, (old, new, ref) in enumerate(commands):
        line = f"{old} {new} {ref}".encode()
        if i == 0:
            line += b"\0" + caps.encode()
        out += pkt_line(line + b"\n")
    return out + b"0000" + data


class CheckOnly:
    """A PushPolicy whose only rule is CHECK (repo, update) -> reason; no hooks, no limits."""

    limits = PushLimits()

    def __init__(self, check=None, limits: PushLimits | None = None) -> None:
        self._check = check
        if limits is not None:
            self.limits = limits

    def check_ref(self, repo, update):
        return self._check(repo, update) if self._check is not None else None

    def before_update(self, update, push_options):
        return None

    def updated(self, updates) -> None:
        pass

    def before_ack(self, updates, push_options):
        return None

    def after_push(self, updates, push_options) -> None:
        pass

    def progress(self, line: str) -> None:
        pass


def run_push(dst: Path, request: bytes, check_ref=None, backend: str = "git",
             limits: PushLimits | None = None) -> tuple[ReceivePack, bytes]:
    reader = ChannelReader(io.BytesIO(request).read)
    written = bytearray()
    proto = SidebandProtocol(reader.read, written.extend, reader.recv)
    handler = ReceivePack(SingleRepoBackend(str(dst)), [str(dst)], proto,
                          policy=CheckOnly(check_ref, limits), pack_backend=backend, stateless_rpc=True)
    try:
        handler.handle()
        proto.flush()
    finally:
        handler.repo.close()
    return handler, bytes(written)


def test_push_checks_the_pack_before_any_ref_moves(repos):
    src, dst, shas = repos
    data = bytearray(pack(src, shas[-1] + "\n"))
    data[-30] ^= 0xFF
    handler, out = run_push(dst, push_bytes([(ZERO, shas[-1], "refs/heads/main")], bytes(data)))
    assert handler.result is not None
    assert handler.result.statuses == {"refs/heads/main": "unpacker error"}
    assert b"unpack " in out and b"unpack ok" not in out
    assert Repo(str(dst)).get_refs() == {} and no_quarantine(dst)
    # a ref to an object the pack does not hold: that ref only is refused
    good = pack(src, shas[1] + "\n")
    handler, out = run_push(dst, push_bytes([(ZERO, shas[1], "refs/heads/a"),
                                             (ZERO, shas[3], "refs/heads/b")], good))
    assert handler.result is not None
    assert handler.result.statuses == {"refs/heads/a": "ok",
                                       "refs/heads/b": "missing necessary objects"}
    assert b"unpack ok" in out


@pytest.mark.parametrize("backend", ["git", "dulwich"])
def test_the_push_policys_limits_are_what_receive_pack_enforces(repos, backend):
    """ReceivePack takes its limits from the policy it is constructed with (RepoPushPolicy
    fills them from `[server]`), on both pack routes."""
    src, dst, shas = repos
    data = pack(src, shas[-1] + "\n")
    biggest = int(git(src, "cat-file", "-s", f"{shas[-1]}:doc.txt"))  # the biggest blob
    for limits, word in ((PushLimits(max_blob_bytes=biggest - 1), "max_blob_bytes"),
                         (PushLimits(max_push_bytes=len(data) // 2), "max_push_bytes")):
        handler, out = run_push(dst, push_bytes([(ZERO, shas[-1], "refs/heads/main")], data),
                                backend=backend, limits=limits)
        assert handler.result is not None
        assert handler.result.statuses == {"refs/heads/main": "unpacker error"}, out
        assert word.encode() in out and Repo(str(dst)).get_refs() == {} and no_quarantine(dst)
    handler, out = run_push(dst, push_bytes([(ZERO, shas[-1], "refs/heads/main")], data),
                            backend=backend, limits=PushLimits(len(data), biggest))
    assert handler.result is not None and handler.result.statuses == {"refs/heads/main": "ok"}


def test_check_2_sees_quarantined_objects_and_a_refusal_moves_nothing_in(repos):
    src, dst, shas = repos
    seen = []

    def check_ref(repo, update) -> str | None:
        commit = repo[update.new.encode()]  # the inspector's view of the push
        seen.append((commit.message, in_repo(dst, update.new),
                     quarantine_mod.active_env().get("GIT_QUARANTINE_PATH", "")))
        return "no thanks"

    handler, out = run_push(dst, push_bytes([(ZERO, shas[-1], "refs/heads/main")],
                                            pack(src, shas[-1] + "\n")), check_ref)
    assert seen and seen[0][0] == b"c4\n" and seen[0][1] is False and "incoming-" in seen[0][2]
    assert handler.result is not None and handler.result.statuses == {"refs/heads/main": "no thanks"}
    # every ref refused: the quarantine never moved in
    assert not in_repo(dst, shas[-1]) and no_quarantine(dst)
    assert quarantine_mod.active_env() == {}


def test_resolving_deltas_progress_reaches_the_client(repos):
    src, dst, shas = repos
    data = pack(src, shas[-1] + "\n", "--delta-base-offset")
    handler, out = run_push(dst, push_bytes([(ZERO, shas[-1], "refs/heads/main")], data,
                                            "report-status side-band-64k ofs-delta"))
    assert b"\x02Resolving deltas: 100%" in out
    assert handler.result is not None and handler.result.statuses == {"refs/heads/main": "ok"}
    assert in_repo(dst, shas[-1]) and no_quarantine(dst)
    # quiet: no progress
    handler, out = run_push(dst, push_bytes([(shas[-1], shas[-1], "refs/heads/other")], data,
                                            "report-status side-band-64k quiet"))
    assert b"Resolving deltas" not in out


def test_dulwich_route_still_chosen_by_setting(repos, monkeypatch):
    src, dst, shas = repos

    def refuse(*_a, **_k):
        raise AssertionError("the git route was used")

    monkeypatch.setattr(GitQuarantine, "receive", refuse)
    handler, _ = run_push(dst, push_bytes([(ZERO, shas[-1], "refs/heads/main")],
                                          pack(src, shas[-1] + "\n")), backend="dulwich")
    assert handler.result is not None and handler.result.statuses == {"refs/heads/main": "ok"}
    assert in_repo(dst, shas[-1])


def test_small_packs_are_checked_in_process_big_ones_by_index_pack(repos, monkeypatch):
    """As git's receive-pack (receive.unpackLimit): after index-pack, fewer objects than the
    limit are checked in-process (no cat-file, no rev-list); both refuse a corrupt pack."""
    src, dst, shas = repos
    data = pack(src, shas[-1] + "\n")
    count = int.from_bytes(data[8:12], "big")
    monkeypatch.setattr(indexpack, "UNPACK_LIMIT", count + 1)
    q = receive(dst, data)
    try:
        assert q.in_process and q.pack_name and q.missing([shas[-1]]) == set()
        biggest = int(git(src, "cat-file", "-s", f"{shas[-1]}:doc.txt"))
        with pytest.raises(BadPack, match=rf"holds a blob of {human_bytes(biggest)}, over"):
            q.check(max_blob_bytes=biggest - 1)  # from entry headers, in-process
    finally:
        q.close()
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x55
    with pytest.raises(BadPack):
        receive(dst, bytes(bad))
    monkeypatch.setattr(indexpack, "UNPACK_LIMIT", count)
    q = receive(dst, data)
    try:
        assert not q.in_process and q.pack_name and q.missing([shas[-1]]) == set()
    finally:
        q.close()
    assert no_quarantine(dst)
