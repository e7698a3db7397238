"""deploy.safetree on hostile trees: what a build may leave in its output and what gets out."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from deploy import safetree
from deploy.errors import DeployError
from deploy.publish import publish


def _ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "public" / "sub").mkdir(parents=True)
    (ws / "public" / "index.html").write_text("page\n")
    (ws / "public" / "sub" / "a.txt").write_text("a\n")
    return ws


def _names(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def test_pack_keeps_files_dirs_and_inside_links(tmp_path):
    ws = _ws(tmp_path)
    os.symlink("sub/a.txt", ws / "public" / "alias.txt")
    os.link(ws / "public" / "sub" / "a.txt", ws / "public" / "twin.txt")  # both links inside
    members = _names(safetree.pack(ws, "public"))
    assert members["./index.html"].isfile() and members["./sub"].isdir()
    assert members["./alias.txt"].issym() and members["./alias.txt"].linkname == "sub/a.txt"


@pytest.mark.parametrize("target", ["/etc/shadow", "../../secrets.key", "sub/../../outside"])
def test_symlink_out_of_the_output_is_refused(tmp_path, target):
    ws = _ws(tmp_path)
    os.symlink(target, ws / "public" / "evil")
    with pytest.raises(DeployError, match="symlink out of the build output"):
        safetree.pack(ws, "public")


def test_hard_link_to_a_file_outside_is_refused(tmp_path):
    ws = _ws(tmp_path)
    secret = tmp_path / "secrets.key"
    secret.write_text("KEY\n")
    os.link(secret, ws / "public" / "key.txt")
    with pytest.raises(DeployError, match="hard link to a file outside"):
        safetree.pack(ws, "public")


def test_output_dir_swapped_for_a_symlink_is_refused(tmp_path):
    ws = _ws(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret").write_text("S\n")
    os.rename(ws / "public", ws / "old")
    os.symlink(tmp_path / "elsewhere", ws / "public")
    with pytest.raises(DeployError, match="not a directory"):
        safetree.pack(ws, "public")
    # a symlinked parent of deploy.dir too
    os.symlink(tmp_path / "elsewhere", ws / "site")
    with pytest.raises(DeployError):
        safetree.pack(ws, "site/x")


def test_fifo_is_refused_not_waited_on(tmp_path):
    ws = _ws(tmp_path)
    os.mkfifo(ws / "public" / "pipe")
    with pytest.raises(DeployError, match="not a file, directory or symlink"):
        safetree.pack(ws, "public")


def test_publish_copies_through_fds_and_refuses_links_out(tmp_path):
    ws = _ws(tmp_path)
    releases = tmp_path / "releases"
    releases.mkdir()
    assert publish(ws / "public", releases, "1") == (2, 7)
    assert (releases / "1" / "sub" / "a.txt").read_text() == "a\n"
    # kernel resolution on the copy: a link chain that lexical checks would let through
    os.symlink("..", ws / "public" / "sub" / "up")
    os.symlink("sub/up/../x", ws / "public" / "sneaky")
    with pytest.raises(DeployError, match="symlink out of the build output"):
        publish(ws / "public", releases, "2")
    assert not (releases / "2").exists() and not list(releases.glob(".2.*"))
    os.unlink(ws / "public" / "sneaky")
    os.unlink(ws / "public" / "sub" / "up")
    os.symlink(ws / "public", tmp_path / "out-link")
    with pytest.raises(DeployError, match="is not a directory"):
        publish(tmp_path / "out-link", releases, "3")
