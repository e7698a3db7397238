"""The deploy artifact is extracted by the rules of tarfile's `data` filter, also on Python
3.11.2 (Debian 12's), which lacks it (#11 attack 8): hostile members are refused the same
way with and without the filter, and a normal site extracts the same."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from buildqueue import deploy_job, safetar

MODES = [False] + ([True] if safetar.HAS_DATA_FILTER else [])


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def _extract(data: bytes, dest: Path, use_filter: bool) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        safetar.extract_all(tar, dest, use_filter=use_filter)


HOSTILE = {
    "absolute": [(_info("/tmp/gitserve-evil-abs"), b"x")],
    "dotdot": [(_info("../evil"), b"x")],
    "dotdot-inside": [(_info("a/../../evil"), b"x")],
    "symlink-absolute": [(_info("etc", tarfile.SYMTYPE, "/etc"), None)],
    "symlink-escape": [(_info("up", tarfile.SYMTYPE, "../.."), None)],
    "through-symlink": [(_info("d", tarfile.DIRTYPE, mode=0o755), None),
                        (_info("d/up", tarfile.SYMTYPE, "../../x"), None),
                        (_info("d/up/evil"), b"x")],
    "hardlink-out": [(_info("pw", tarfile.LNKTYPE, "/etc/passwd"), None)],
    "hardlink-dotdot": [(_info("pw", tarfile.LNKTYPE, "../../etc/passwd"), None)],
    "device": [(_info("dev", tarfile.CHRTYPE), None)],
    "fifo": [(_info("fifo", tarfile.FIFOTYPE), None)],
}


@pytest.mark.parametrize("use_filter", MODES)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_are_refused(tmp_path, case, use_filter):
    dest = tmp_path / "out"
    dest.mkdir()
    if case == "absolute" and use_filter:
        # tarfile's data filter strips the leading '/' (the fallback refuses): inside either way
        _extract(_tar(HOSTILE[case]), dest, use_filter)
        assert (dest / "tmp" / "gitserve-evil-abs").is_file()
    else:
        with pytest.raises((safetar.UnsafeMember, tarfile.TarError)):
            _extract(_tar(HOSTILE[case]), dest, use_filter)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "x").exists()
    assert not Path("/tmp/gitserve-evil-abs").exists()


@pytest.mark.parametrize("use_filter", MODES)
def test_a_site_extracts_with_safe_modes(tmp_path, use_filter):
    dest = tmp_path / "out"
    dest.mkdir()
    data = _tar([
        (_info("assets", tarfile.DIRTYPE, mode=0o777), None),
        (_info("index.html", mode=0o666), b"<p>hi</p>"),
        (_info("assets/app.js"), b"js"),
        (_info("run.sh", mode=0o4755), b"#!/bin/sh\n"),
        (_info("latest", tarfile.SYMTYPE, "assets/app.js"), None),
        (_info("copy.js", tarfile.LNKTYPE, "assets/app.js"), None),
    ])
    _extract(data, dest, use_filter)
    assert (dest / "index.html").read_bytes() == b"<p>hi</p>"
    assert (dest / "latest").is_symlink() and (dest / "latest").read_bytes() == b"js"
    assert (dest / "copy.js").read_bytes() == b"js"
    assert stat.S_IMODE((dest / "index.html").stat().st_mode) & 0o022 == 0
    run = stat.S_IMODE((dest / "run.sh").stat().st_mode)
    assert run & 0o100 and not run & (stat.S_ISUID | stat.S_ISGID)
    assert (dest / "index.html").stat().st_uid == os.geteuid()


def test_deploy_job_unpacks_its_own_packing(tmp_path):
    """pack() then unpack(), as hand_over and run_deploy do, on whatever Python runs this."""
    src = tmp_path / "site"
    (src / "css").mkdir(parents=True)
    (src / "index.html").write_text("v1\n")
    (src / "css" / "a.css").write_text("a\n")
    (src / "alias.html").symlink_to("index.html")
    out = tmp_path / "out"
    out.mkdir()
    deploy_job.unpack(deploy_job.pack(tmp_path, "site"), out)
    assert (out / "index.html").read_text() == "v1\n" and (out / "css" / "a.css").read_text() == "a\n"
    assert (out / "alias.html").read_text() == "v1\n"
