"""The push check reads blob types and sizes from pack entry headers (never inflating a
blob): the answers must equal dulwich's for whole objects, deltas (by offset and by id) and
thin packs completed with their external bases."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dulwich.pack import OFS_DELTA, REF_DELTA

from gitserve.git.packformat import entry_header
from gitserve.git.quarantine import BLOB_TYPE, BadPack, Quarantine, _PackHeaders
from tests.support.tools import require_tool

ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
           GIT_COMMITTER_EMAIL="t@e", GIT_CONFIG_NOSYSTEM="1", HOME="/nonexistent")


def git(cwd: Path, *args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, input=input, capture_output=True,
                          check=True, timeout=60).stdout


@pytest.fixture
def repos(tmp_path):
    require_tool("git")
    src = tmp_path / "src"
    git(tmp_path, "init", "-q", "-b", "main", str(src))
    text = "".join(f"line {i} of a file that changes a little each commit\n" for i in range(4000))
    shas = []
    for n in range(6):
        (src / "doc.txt").write_text(text + f"edit {n}\n" * (n + 1))
        (src / f"bin{n}.dat").write_bytes(os.urandom(50_000))
        git(src, "add", "-A")
        git(src, "commit", "-q", "-m", f"c{n}")
        shas.append(git(src, "rev-parse", "HEAD").decode().strip())
    dst = tmp_path / "dst.git"
    git(tmp_path, "init", "-q", "--bare", str(dst))
    return src, dst, shas


def _pack(src: Path, revs: str, *flags: str) -> bytes:
    return git(src, "pack-objects", "--stdout", "--revs", "-q", "--depth=50", *flags, input=revs.encode())


def _receive(dst: Path, data: bytes) -> Quarantine:
    import io

    q = Quarantine(dst / "objects")
    buf = io.BytesIO(data)
    q.receive(buf.read, None)
    return q


def _compare(q: Quarantine) -> dict[int, int]:
    """Check every object; returns how many entries of each raw pack type were seen."""
    headers = _PackHeaders(q.store.packs)
    seen: dict[int, int] = {}
    try:
        pack = q.store.packs[0]
        with open(pack._data_path, "rb") as f:
            for sha in q.new_ids:
                obj = q.store[sha]
                assert headers.info(sha) == (obj.type_num, obj.raw_length()), sha
                f.seek(pack.index.object_offset(sha))
                raw_type = entry_header(f.read(32))[0]
                seen[raw_type] = seen.get(raw_type, 0) + 1
    finally:
        headers.close()
    return seen


def test_headers_match_whole_objects_and_deltas(repos):
    src, dst, shas = repos
    data = _pack(src, shas[-1] + "\n", "--delta-base-offset")
    q = _receive(dst, data)
    try:
        assert _compare(q).get(OFS_DELTA, 0) > 0
        q.check(max_blob_bytes=1_000_000)
    finally:
        q.close()
    q = _receive(dst, _pack(src, shas[-1] + "\n"))  # REF_DELTA entries (no --delta-base-offset)
    try:
        assert _compare(q).get(REF_DELTA, 0) > 0
    finally:
        q.close()


def test_thin_pack_against_the_repo(repos):
    src, dst, shas = repos
    first = _receive(dst, _pack(src, shas[2] + "\n"))
    first.check()
    first.store.close()
    first.migrate()
    first.close()
    thin = _pack(src, f"{shas[-1]}\n^{shas[2]}\n", "--thin", "--delta-base-offset")
    q = _receive(dst, thin)
    try:
        assert _compare(q).get(OFS_DELTA, 0) > 0
        q.check(max_blob_bytes=1_000_000)
    finally:
        q.close()


def test_blob_limit_counts_the_blob_not_its_delta(repos):
    src, dst, shas = repos
    q = _receive(dst, _pack(src, shas[-1] + "\n", "--delta-base-offset"))
    try:
        sizes = [info[1] for sha in q.new_ids
                 if (info := _PackHeaders(q.store.packs).info(sha)) and info[0] == BLOB_TYPE]
        biggest = max(sizes)  # doc.txt, mostly stored as deltas of a few hundred bytes
        with pytest.raises(BadPack, match=r"max_blob_bytes"):
            q.check(max_blob_bytes=biggest - 1)
        q.check(max_blob_bytes=biggest)
    finally:
        q.close()
