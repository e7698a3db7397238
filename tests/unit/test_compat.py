"""gitserve/_compat: every library internal gitserve uses exists, with the shape it is used
with, in the installed dulwich and paramiko; and the installed versions are inside the
pins of pyproject.toml. An upgrade that renames or drops one fails here, not in a push."""

from __future__ import annotations

import importlib
import inspect
import re
import socket
import subprocess
import tomllib
from importlib import metadata
from io import BytesIO
from pathlib import Path

import pytest
from dulwich.objects import Blob
from dulwich.protocol import Protocol
from dulwich.repo import Repo
from dulwich.server import DictBackend, ReceivePackHandler, UploadPackHandler
from packaging.requirements import Requirement

from gitserve._compat import dulwich as dulwich_compat
from gitserve._compat import paramiko as paramiko_compat
from tests.support.tools import REPO_ROOT, require_tool

# the parameters gitserve passes (a renamed or reordered one breaks the call)
SIGNATURES = {
    "dulwich.object_store._bound_read_callables": ["read_all", "read_some", "max_input_size"],
    "dulwich.object_store.DiskObjectStore._index_pack": ["self", "indexer", "num_objects"],
    "dulwich.object_store.DiskObjectStore._complete_pack": ["self", "f", "path", "entries", "ext_refs"],
    "dulwich.object_store.DiskObjectStore._iter_loose_objects": ["self"],
    "dulwich.object_store.DiskObjectStore._update_pack_cache": ["self"],
    "dulwich.pack.PackStreamReader._buf_len": ["self"],
    "dulwich.server.UploadPackHandler._start_pack_send_phase": ["self"],
    "dulwich.server.ReceivePackHandler._receive_max_input_size": ["self"],
    "dulwich.server._ProtocolGraphWalker.__init__": ["self", "handler", "object_store", "get_peeled",
                                                     "get_symrefs"],
    "paramiko.auth_handler.AuthHandler._generate_key_from_request": ["self", "algorithm", "keyblob"],
    "paramiko.auth_handler.AuthHandler._send_auth_result": ["self", "username", "method", "result"],
    "paramiko.auth_handler.AuthHandler._disconnect_no_more_auth": ["self"],
}


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


ALL = [*dulwich_compat.INTERNALS, *paramiko_compat.INTERNALS]


@pytest.mark.parametrize("owner,member,kind", [e for e in ALL if e[2] != "instance"],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_class_and_module_members_exist(owner, member, kind):
    assert hasattr(_resolve(owner), member), f"{owner}.{member} is gone: update gitserve/_compat"


@pytest.mark.parametrize("dotted,params", sorted(SIGNATURES.items()))
def test_signatures_are_the_ones_gitserve_calls(dotted, params):
    sig = inspect.signature(_resolve(dotted))  # type: ignore[arg-type]
    assert list(sig.parameters)[:len(params)] == params, f"{dotted}{sig}"
    required = [p for p in list(sig.parameters)[len(params):]
                if sig.parameters[p].default is inspect.Parameter.empty
                and sig.parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                   inspect.Parameter.VAR_KEYWORD)]
    assert required == [], f"{dotted} has new required parameters: {required}"


def test_every_signature_checked_is_listed_as_an_internal():
    listed = {f"{o}.{m}" for o, m, _ in ALL}
    assert {d for d in SIGNATURES if not d.endswith(".__init__")} <= listed


@pytest.fixture
def packed_repo(tmp_path: Path) -> Repo:
    repo = Repo.init_bare(str(tmp_path / "r.git"), mkdir=True)
    blobs = [Blob.from_string(f"object {i}\n".encode()) for i in range(3)]
    for b in blobs:
        repo.object_store.add_object(b)
    ids = "".join(b.id.decode() + "\n" for b in blobs).encode()
    subprocess.run([require_tool("git"), "--git-dir", repo.path, "pack-objects", "-q",
                    str(Path(repo.path) / "objects" / "pack" / "pack")], input=ids, check=True,
                   capture_output=True)
    subprocess.run([require_tool("git"), "--git-dir", repo.path, "prune-packed"], check=True)
    repo.object_store.add_object(Blob.from_string(b"still loose\n"))
    repo.close()
    return Repo(str(tmp_path / "r.git"))


def test_pack_and_store_accessors_on_a_real_repository(packed_repo: Repo):
    store = packed_repo.object_store
    dulwich_compat.rescan_packs(store)
    (pack,) = store.packs
    data_path = dulwich_compat.pack_data_path(pack)
    assert data_path.endswith(".pack") and Path(data_path).is_file()
    base = dulwich_compat.pack_basename(pack)
    assert data_path == base + ".pack" and Path(base + ".idx").is_file()
    assert list(dulwich_compat.iter_loose_objects(store)) == [Blob.from_string(b"still loose\n").id]
    assert dulwich_compat.lean_thin_pack_available(store)


def test_the_pack_stream_reader_state_under_public_names(packed_repo: Repo):
    (pack,) = packed_repo.object_store.packs
    raw = Path(dulwich_compat.pack_data_path(pack)).read_bytes()
    stream = BytesIO(raw)
    out = BytesIO()
    copier = dulwich_compat.PackStreamCopier(packed_repo.object_store.object_format.hash_func,
                                             stream.read, stream.read, out)
    assert copier.hash_size == 20 and copier.zlib_bufsize > 0
    assert isinstance(copier.read_ahead, BytesIO) and copier.buffered_len() == 0
    copier.verify()  # dulwich's own pass over the stream, then the state we read
    assert copier.num_objects == 3
    assert bytes(bytearray(copier.trailer)) == raw[-20:] and out.getvalue() == raw
    copier.read_ahead = BytesIO(b"xy")
    assert copier.buffered_len() == 2


def test_handler_state_accessors(packed_repo: Repo):
    backend = DictBackend({b"/": packed_repo})
    proto = Protocol(BytesIO().read, BytesIO().write)
    up = UploadPackHandler(backend, [b"/"], proto)
    assert dulwich_compat.done_received(up) is False
    dulwich_compat.begin_have_lines(up)
    assert up._processing_have_lines is True
    walker = dulwich_compat.ProtocolGraphWalker(up, packed_repo.object_store, packed_repo.get_peeled,
                                                packed_repo.refs.get_symrefs)
    assert walker.handler is up
    recv = ReceivePackHandler(backend, [b"/"], proto)
    assert dulwich_compat.receive_max_input_size(recv) is None
    config = packed_repo.get_config()
    config.set((b"receive",), b"maxInputSize", b"12345")
    config.write_to_path()
    recv = ReceivePackHandler(DictBackend({b"/": Repo(packed_repo.path)}), [b"/"], proto)
    assert dulwich_compat.receive_max_input_size(recv) == 12345


def test_the_auth_handler_routes_paramiko_steps_to_public_names():
    import paramiko

    a, b = socket.socketpair()
    try:
        transport = paramiko.Transport(a)
        assert hasattr(transport, "auth_handler")
        calls: list[tuple] = []

        class Probe(paramiko_compat.AuthHandler):
            def key_from_request(self, algorithm, keyblob):
                calls.append(("key", algorithm))
                return super().key_from_request(algorithm, keyblob)

            def send_auth_result(self, username, method, result):
                calls.append(("result", username, method, result))

        handler = Probe(transport)
        paramiko_compat.install_auth_handler(transport, handler)
        assert transport.auth_handler is handler
        blob = _ed25519_blob()
        parsed = handler._generate_key_from_request("ssh-ed25519", blob)
        assert parsed.asbytes() == blob
        handler._send_auth_result("alice", "publickey", paramiko.AUTH_FAILED)
        assert calls == [("key", "ssh-ed25519"), ("result", "alice", "publickey", paramiko.AUTH_FAILED)]
        transport.close()
    finally:
        a.close()
        b.close()


def _ed25519_blob() -> bytes:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return base64.b64decode(pub.split()[1])


PINNED = ("dulwich", "paramiko", "rq", "starlette")


def test_the_libraries_gitserve_leans_on_have_upper_pins_and_are_inside_them():
    deps = tomllib.loads((Path(REPO_ROOT) / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = {Requirement(d).name.lower(): Requirement(d) for d in deps}
    for name in PINNED:
        req = reqs[name]
        assert any(s.operator in ("<", "<=") for s in req.specifier), f"{name} has no upper pin"
        installed = metadata.version(name)
        assert req.specifier.contains(installed, prereleases=True), \
            f"{name} {installed} is outside {req.specifier}: test it, then move the pin"


def test_internals_are_reached_only_through_compat():
    """No module outside gitserve/_compat names a private dulwich/paramiko member (the
    pack-entry header decoders aside: they are git/packformat.py's to replace)."""
    names = {m for _, m, _ in ALL if m.startswith("_")}
    allowed_elsewhere = {"_decode_object_header", "_decode_delta_base_offset"}
    found = []
    for pkg in ("gitserve", "buildqueue", "deploy"):
        for path in (Path(REPO_ROOT) / pkg).rglob("*.py"):
            if "_compat" in path.parts:
                continue
            text = path.read_text()
            for name in names:
                for match in re.finditer(rf"(?<![\w]){re.escape(name)}\b", text):
                    line = text.count("\n", 0, match.start()) + 1
                    found.append(f"{path.relative_to(REPO_ROOT)}:{line}: {name}")
            for name in re.findall(r"(?:dulwich|paramiko)[\w.]*\.(_[a-z]\w*)", text):
                if name not in allowed_elsewhere:
                    found.append(f"{path.relative_to(REPO_ROOT)}: {name}")
    assert found == []
