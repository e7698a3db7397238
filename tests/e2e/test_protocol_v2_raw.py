"""Protocol v2 spoken by hand over ssh, as an attacker (or a client git does not ship) would:
hidden refs stay hidden from ls-refs whatever the prefix, wants of hidden objects are refused
with `ERR`, malformed requests get one ERR line, `:builder` sees refs/gitserve/*, and the
sideband-all / wait-for-done / server-option variants behave."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from dulwich.protocol import pkt_line

from tests.support.server import GitServer

pytestmark = pytest.mark.timeout(300)

CONF = "repo proj\n    RW+ = alice\n"
HIDDEN = "refs/gitserve/builds/7"


def request(command: str, args: list[str], caps: tuple[str, ...] = ("agent=raw/1",)) -> bytes:
    out = pkt_line(f"command={command}\n".encode())
    out += b"".join(pkt_line(f"{c}\n".encode()) for c in caps)
    out += b"0001" + b"".join(pkt_line(f"{a}\n".encode()) for a in args) + b"0000"
    return out


def talk(srv: GitServer, key: Path, data: bytes, version: str = "version=2") -> bytes:
    argv = srv.ssh_command(key, "-o", f"SetEnv=GIT_PROTOCOL={version}") + \
        [f"git@{srv.host}", "git-upload-pack 'proj'"]
    result = subprocess.run(argv, input=data + b"0000", capture_output=True, timeout=60,
                            env=srv.client_env("alice"), check=False)
    return result.stdout


def pkts(data: bytes) -> list[bytes | str]:
    """Split a response into pkt-line payloads; "flush"/"delim" for the special ones."""
    out: list[bytes | str] = []
    while data:
        n = int(data[:4], 16)
        if n in (0, 1):
            out.append("flush" if n == 0 else "delim")
            data = data[4:]
            continue
        out.append(data[4:n])
        data = data[n:]
    return out


@pytest.fixture(scope="module")
def srv(gitserve_module_factory):
    server = gitserve_module_factory(users=("alice",), conf=CONF)
    work = server.clone("alice", "proj")
    server.commit("alice", work, "a.txt", "a\n")
    server.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    server.commit("alice", work, "secret.txt", "hidden\n")
    hidden = server.git("alice", "rev-parse", "HEAD", cwd=work).stdout.strip()
    server.git("alice", "push", "-q", "origin", "HEAD:refs/heads/tmp", cwd=work)
    bare = server.repo_path("proj")
    subprocess.run(["git", "--git-dir", str(bare), "update-ref", HIDDEN, hidden], check=True)
    subprocess.run(["git", "--git-dir", str(bare), "update-ref", "-d", "refs/heads/tmp"],
                   check=True)
    server.hidden = hidden
    server.main = server.git("alice", "rev-parse", "HEAD~1", cwd=work).stdout.strip()
    return server


def advert_and_response(out: bytes) -> tuple[list, list]:
    parts = pkts(out)
    end = parts.index("flush")
    return parts[:end], parts[end + 1:]


def test_capability_advertisement(srv: GitServer) -> None:
    advert, _ = advert_and_response(talk(srv, srv.key_for("alice"), b""))
    assert advert[0] == b"version 2\n"
    caps = {p.split(b"=")[0].strip() for p in advert[1:]}
    assert {b"agent", b"ls-refs", b"fetch", b"server-option", b"object-format"} <= caps


@pytest.mark.parametrize("prefix", ["refs/gitserve/", "refs/", "", "refs/gitserve/builds/7"])
def test_ls_refs_never_lists_hidden_refs(srv: GitServer, prefix: str) -> None:
    args = ["symrefs", "peel"] + ([f"ref-prefix {prefix}"] if prefix else [])
    _, resp = advert_and_response(talk(srv, srv.key_for("alice"), request("ls-refs", args)))
    text = b"".join(p for p in resp if isinstance(p, bytes))
    assert b"refs/gitserve" not in text
    assert srv.hidden.encode() not in text


def test_builder_sees_hidden_refs(srv: GitServer) -> None:
    key = srv.home / "worker_key"
    _, resp = advert_and_response(
        talk(srv, key, request("ls-refs", ["ref-prefix refs/gitserve/"])))
    assert resp[0] == f"{srv.hidden} {HIDDEN}\n".encode()


@pytest.mark.parametrize("what", ["commit", "tree", "bogus"])
def test_fetch_of_a_hidden_object_is_refused(srv: GitServer, what: str) -> None:
    target = {"commit": srv.hidden, "bogus": "1" * 40}.get(what)
    if target is None:  # the tree of the hidden commit (new: the secret file)
        target = subprocess.run(["git", "--git-dir", str(srv.repo_path("proj")), "rev-parse",
                                 f"{srv.hidden}^{{tree}}"], capture_output=True, text=True,
                                check=True).stdout.strip()
    out = talk(srv, srv.key_for("alice"), request("fetch", [f"want {target}", "done"]))
    _, resp = advert_and_response(out)
    assert resp[0] == f"ERR upload-pack: not our ref {target}\n".encode()
    assert b"PACK" not in out


@pytest.mark.parametrize("line", ["want nothex", "deepen x", "frobnicate",
                                  "filter sparse:path=/etc/passwd", "filter combine:a+b"])
def test_malformed_fetch_gets_one_err_line(srv: GitServer, line: str) -> None:
    out = talk(srv, srv.key_for("alice"), request("fetch", [f"want {srv.main}", line, "done"]))
    _, resp = advert_and_response(out)
    assert isinstance(resp[0], bytes) and resp[0].startswith(b"ERR ")
    assert b"Traceback" not in out and b"PACK" not in out


def test_unknown_command_and_object_format(srv: GitServer) -> None:
    for data in (request("push", []), request("ls-refs", [], caps=("object-format=sha256",))):
        _, resp = advert_and_response(talk(srv, srv.key_for("alice"), data))
        assert resp[0].startswith(b"ERR ")


def test_fetch_with_sideband_all_and_server_options(srv: GitServer) -> None:
    out = talk(srv, srv.key_for("alice"),
               request("fetch", [f"want {srv.main}", "sideband-all", "no-progress"],
                       caps=("agent=raw/1", "server-option=foo", "server-option=bar")))
    _, resp = advert_and_response(out)
    # without `done` and without haves: acknowledgments NAK, no pack yet, each line on band 1
    assert resp[:3] == [b"\x01acknowledgments\n", b"\x01NAK\n", "flush"]
    out = talk(srv, srv.key_for("alice"),
               request("fetch", [f"want {srv.main}", "sideband-all", "done"]))
    _, resp = advert_and_response(out)
    assert resp[0] == b"\x01packfile\n"
    assert any(isinstance(p, bytes) and p.startswith(b"\x01PACK") for p in resp)


def test_wait_for_done_never_says_ready(srv: GitServer) -> None:
    out = talk(srv, srv.key_for("alice"),
               request("fetch", [f"want {srv.main}", f"have {srv.main}", "wait-for-done"]))
    _, resp = advert_and_response(out)
    assert resp == [b"acknowledgments\n", f"ACK {srv.main}\n".encode(), "flush"]
    out = talk(srv, srv.key_for("alice"), request("fetch", [f"want {srv.main}",
                                                            f"have {srv.main}"]))
    _, resp = advert_and_response(out)
    assert resp[:4] == [b"acknowledgments\n", f"ACK {srv.main}\n".encode(), b"ready\n",
                        "delim"]
    assert resp[4] == b"packfile\n"


def test_v0_client_on_the_same_server_still_gets_v0(srv: GitServer) -> None:
    out = talk(srv, srv.key_for("alice"), b"", version="")
    assert b"version 2" not in out
    assert f"{srv.main} refs/heads/main".encode() in out
