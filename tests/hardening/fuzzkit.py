"""Fuzz targets shared by the bounded tests (tests/hardening/test_fuzz.py) and the long run
(scripts/stress/fuzz.py): hypothesis strategies plus one `check_*` function per target that
runs an input and asserts the invariants (no crash, no hang, no write outside the repo, a
clear error). Each check returns a short outcome label so a run can report what it saw.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from dulwich.errors import GitProtocolError
from dulwich.objects import Blob, Commit, Tree
from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.pack import write_pack_objects
from dulwich.protocol import pkt_line
from dulwich.refs import check_ref_format
from dulwich.repo import Repo
from hypothesis import strategies as st

from gitserve import acl, adminrepo, keys, repos, settings as settings_mod, upkeep
from gitserve.git.receive import PushLimits, ReceivePack
from gitserve.git.repo import SingleRepoBackend
from gitserve.git.sideband import ChannelReader, SidebandProtocol

ZERO = b"0" * 40
# a push that ends in one of these is the client's fault and is answered, not a crash
PROTOCOL_ERRORS = (GitProtocolError,)

# --- the conf parser ------------------------------------------------------------------

CONF_WORDS = ["repo", "@all", "@g", "@g2", "=", "RW+", "RW", "R", "-", "C", "RWC", "RW+CD",
              "RWM", "foo", "bar/baz", "CREATOR", "READERS", "WRITERS", "include", "subconf",
              "option", "config", "deny-rules", "build.mode", "hook.post-receive", "main",
              "refs/tags/v[0-9]", "VREF/NAME/", "VREF/COUNT/3", "VREF/MAX_NEWBIN_SIZE/100",
              "u/CREATOR/[a-z]+", "\"x.conf\"", "'y.conf'", "*.conf", "{a,b}", "..", "#",
              "alice", "bob", "@", "\\", "(", ")", "[", "]", "$", "^", "%", "\t", "\x00", "é"]
conf_line = st.lists(st.sampled_from(CONF_WORDS) | st.text(max_size=12), max_size=8).map(" ".join)
conf_text = st.lists(conf_line, max_size=15).map("\n".join)


def check_conf(main: str, extra: str) -> str:
    """Compile a random conf (with an included file): Rules, or ConfError "conf/F:N: msg"."""
    try:
        rules = acl.load_files({"gitolite.conf": main, "x.conf": extra, "y.conf": main[:40]})
    except acl.ConfError as exc:
        msg = str(exc)
        assert msg.startswith("conf/") and msg.strip() and "\n" not in msg.strip(), msg
        return "refused"
    # the compiled rules answer queries without raising
    for repo in ("foo", "bar/baz", "u/alice/x", "gitolite-admin"):
        for user in ("alice", "bob"):
            rules.check(repo, user, "R")
            rules.check(repo, user, "W", "refs/heads/main")
        rules.options(repo)
    rules.info("alice", {})
    return "compiled"


# --- the SSH exec-command parser ------------------------------------------------------

VERBS = ["git-upload-pack", "git-receive-pack", "git-upload-archive", "git upload-pack",
         "git receive-pack", "info", "help", "perms", "desc", "builds", "deploy", "", "rm",
         "sh", "git-shell", "scp", "ls"]
NASTY = ["foo", "'foo'", "'/foo.git'", "foo.git", "/foo", "~/foo", "'u/alice/new1'",
         "u/alice/x.git/y", "../foo", "'../../etc/passwd'", "/etc/passwd", "foo/../bar", "'",
         "\"foo\"", "foo bar", "$(id)", "`id`", ";id", "|id", "&&", "-l", "-lr", "+", "READERS",
         "bob", "a" * 300, "foo\x00", "fo\x01o", "\n", "\r", "gitolite-admin", "%", "*",
         "refs/../x", "u/alice/", "u//alice/x", "./foo", "foo/.", ".foo", "é"]
command_line = st.tuples(
    st.sampled_from(VERBS),
    st.lists(st.sampled_from(NASTY) | st.text(max_size=20), max_size=4),
).map(lambda t: " ".join([t[0], *t[1]]).strip() if t[0] or t[1] else "")


class FakeChannel:
    """The parts of a paramiko Channel session.run uses; stdin is a fixed byte string."""

    def __init__(self, stdin: bytes = b"") -> None:
        self._in = io.BytesIO(stdin)
        self.out = bytearray()
        self.err = bytearray()

    def sendall(self, data: bytes) -> None:
        self.out += data

    def sendall_stderr(self, data: bytes) -> None:
        self.err += data

    def recv(self, n: int) -> bytes:
        return self._in.read(n)

    def get_id(self) -> int:
        return 0


class FakeIface:
    peer = "127.0.0.1"


FUZZ_CONF = """repo gitolite-admin
    RW+ = admin
repo foo
    RW+ = alice
    R   = bob
repo u/CREATOR/[a-z0-9]+
    C   = alice
    RW+ = CREATOR
"""


def make_home(base: Path) -> settings_mod.Settings:
    """An initialised server home with alice, bob and the repos of FUZZ_CONF."""
    from gitserve.cli.init import init_home

    keydir = base / "keys"
    keydir.mkdir(parents=True)
    keys.write_keypair(keydir / "admin", "ed25519", "admin")
    init_home(base / "home", "admin", keydir / "admin.pub", author="Fuzz <fuzz@example.com>")
    s = settings_mod.load(base / "home")
    for user in ("alice", "bob"):
        keys.write_keypair(keydir / user, "ed25519", user)
        adminrepo.add_key(s, user, (keydir / f"{user}.pub").read_text(), "fuzz")
    adminrepo.set_conf(s, FUZZ_CONF, "fuzz")
    adminrepo.compile(s)
    return s


def tree_snapshot(root: Path, skip: tuple[str, ...] = ()) -> set[str]:
    """Every path under ROOT but the top-level SKIP dirs (to prove nothing was written
    outside the repositories)."""
    out = set()
    for dirpath, dirs, files in os.walk(root):
        if dirpath == str(root):
            dirs[:] = [d for d in dirs if d not in skip]
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def check_command(s: settings_mod.Settings, command: str, user: str, stdin: bytes = b"") -> str:
    """Run one exec command as USER through session.run; returns "ok" or "refused"."""
    from gitserve.ssh import session

    home_before = tree_snapshot(s.home, ("repositories", "logs"))
    repos_before = set(repos.list_names(s))
    chan = FakeChannel(stdin)
    started = time.monotonic()
    status = session.run(s, chan, command, user, FakeIface.peer)
    assert time.monotonic() - started < 10, f"{command!r} took too long"
    assert isinstance(status, int)
    err = chan.err.decode("utf-8", "replace")
    hung_up = status == 1 and not err and command.startswith("git") and not stdin
    if status != 0 and not hung_up:  # a hang-up after the ref advertisement has no one to tell
        assert err.startswith("FATAL: ") or err.startswith("WARNING") or "Usage" in \
            chan.out.decode("utf-8", "replace") or err.startswith("Invalid role"), \
            f"{command!r} failed without a clear error: {err!r}"
    # nothing appeared in HOME except repositories and the audit log
    home_after = tree_snapshot(s.home, ("repositories", "logs"))
    assert home_after == home_before, f"{command!r} wrote {home_after ^ home_before}"
    # a new repository is only ever a wild repo alice may create, under the repositories dir
    for name in set(repos.list_names(s)) - repos_before:
        assert user == "alice" and name.startswith("u/alice/"), (command, name)
        shutil.rmtree(repos.path(s, name))
    for p in s.repos_dir.rglob("*"):
        real = Path(os.path.realpath(p))
        assert s.repos_dir.resolve() in real.parents, f"{p} escapes the repositories dir"
    return "ok" if status == 0 else "refused"


# --- pkt-line / receive-pack input ----------------------------------------------------

@dataclass
class PushFixture:
    template: Path  # a bare repo with one commit on main
    tip: bytes
    packs: dict[str, bytes]  # name -> pack bytes
    new_tip: bytes  # the commit in packs["good"]


def _pack(objects: list) -> bytes:
    buf = io.BytesIO()
    write_pack_objects(buf.write, [(o, None) for o in objects], object_format=DEFAULT_OBJECT_FORMAT)
    return buf.getvalue()


def make_push_fixture(base: Path) -> PushFixture:
    path = base / "template.git"
    base.mkdir(parents=True, exist_ok=True)
    repo = Repo.init_bare(str(path), mkdir=True)
    blob = Blob.from_string(b"hello\n")
    tree = Tree()
    tree.add(b"README", 0o100644, blob.id)
    c1 = _commit(tree.id, [], b"first")
    for o in (blob, tree, c1):
        repo.object_store.add_object(o)
    repo.refs[b"refs/heads/main"] = c1.id
    repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    repo.close()
    blob2 = Blob.from_string(b"second\n" * 50)
    tree2 = Tree()
    tree2.add(b"README", 0o100644, blob.id)
    tree2.add(b"two", 0o100644, blob2.id)
    c2 = _commit(tree2.id, [c1.id], b"second")
    ghost_tree = Tree()
    ghost_tree.add(b"x", 0o100644, b"1" * 40)
    c_missing = _commit(ghost_tree.id, [c1.id], b"points at a missing blob")
    packs = {
        "good": _pack([blob2, tree2, c2]),
        "missing-object": _pack([ghost_tree, c_missing]),
        "empty": _pack([]),
    }
    packs["bogus-commit"] = raw_pack([(1, b"tree zzzz\nauthor nobody\n\nbroken\n")])
    packs["bogus-tree"] = raw_pack([(2, b"100644 \x00short")])
    packs["size-lie"] = raw_pack([(3, b"x" * 10)], lie=10_000_000)
    return PushFixture(path, c1.id, packs, c2.id)


def raw_pack(entries: list[tuple[int, bytes]], lie: int | None = None) -> bytes:
    """A pack written by hand (so objects can be malformed): [(type number, body)]; LIE
    replaces the declared size of every object."""
    import hashlib
    import struct
    import zlib

    out = bytearray(b"PACK" + struct.pack(">II", 2, len(entries)))
    for type_num, body in entries:
        size = len(body) if lie is None else lie
        byte = (type_num << 4) | (size & 0x0F)
        size >>= 4
        header = bytearray()
        while size:
            header.append(byte | 0x80)
            byte = size & 0x7F
            size >>= 7
        header.append(byte)
        out += header + zlib.compress(body)
    out += hashlib.sha1(out).digest()
    return bytes(out)


def _commit(tree: bytes, parents: list[bytes], msg: bytes) -> Commit:
    c = Commit()
    c.tree = tree
    c.parents = parents
    c.author = c.committer = b"Fuzz <fuzz@example.com>"
    c.author_time = c.commit_time = 1_700_000_000
    c.author_timezone = c.commit_timezone = 0
    c.message = msg + b"\n"
    return c


REF_NAMES = [b"refs/heads/main", b"refs/heads/new", b"refs/tags/v1", b"HEAD", b"main",
             b"refs/heads/../../../../tmp/evil", b"refs/heads/a..b", b"refs/heads/x.lock",
             b"refs/heads/\x01ctl", b"refs/heads/sp ace", b"refs/heads/tab\t", b"/etc/passwd",
             b"refs/gitserve/build", b"refs/heads/" + b"n" * 4000, b"refs/heads/a/",
             b"refs/heads//b", b"refs/heads/@{x}", b"refs/heads/~^:?*[", b"refs/heads/\xff\xfe",
             b"refs/heads/.hidden", b"refs", b"refs/heads/main\x00x", b"objects/../../x"]
CAPS = [b"report-status", b"side-band-64k", b"atomic", b"quiet", b"delete-refs", b"ofs-delta",
        b"agent=fuzz/1", b"push-options", b"object-format=sha256", b"\xff", b"=" * 100]


@st.composite
def push_input(draw: st.DrawFn, fx: PushFixture) -> bytes:
    """A receive-pack request: ref commands in pkt-lines, a flush, then a (damaged) pack."""
    shas = st.sampled_from([ZERO, fx.tip, fx.new_tip] * 3 + [b"1" * 40, b"g" * 40, b"abc", b""])
    refs = st.sampled_from(REF_NAMES[:3] * 6 + REF_NAMES) | st.binary(max_size=40)
    cmds = draw(st.lists(st.tuples(shas, shas, refs), min_size=0, max_size=4))
    coherent = draw(st.booleans())  # half the inputs start as a push git would send
    if coherent:
        cmds = [(fx.tip, fx.new_tip, b"refs/heads/main"), (ZERO, fx.new_tip, b"refs/heads/new")]
        cmds = cmds[:draw(st.integers(1, 2))] + cmds[2:] + \
            draw(st.lists(st.tuples(shas, shas, refs), max_size=1))
    caps = draw(st.lists(st.sampled_from(CAPS), max_size=4))
    out = bytearray()
    for i, (old, new, ref) in enumerate(cmds):
        line = old + b" " + new + b" " + ref
        if i == 0:
            line += b"\x00" + b" ".join(caps)
        line += b"\n"
        if len(line) + 4 > 65520:
            line = line[:65000]
        out += pkt_line(line)
    framing = "flush" if coherent else \
        draw(st.sampled_from(["flush"] * 6 + ["none", "bad-length", "short", "huge-length"]))
    if framing == "flush":
        out += b"0000"
    elif framing == "bad-length":
        out += b"zz" + draw(st.binary(max_size=6))
    elif framing == "short":
        out += b"00ff" + b"x" * draw(st.integers(0, 20))
    elif framing == "huge-length":
        out += b"fff0"
    pack = "good" if coherent and draw(st.booleans()) else \
        draw(st.sampled_from(sorted(fx.packs) + ["none", "random"]))
    data = b"" if pack == "none" else (
        draw(st.binary(max_size=200)) if pack == "random" else fx.packs[pack])
    damage = draw(st.sampled_from(["none"] * 4 + ["truncate", "flip", "count"]))
    if data and damage == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif data and damage == "flip":
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    elif len(data) >= 12 and damage == "count":
        data = data[:8] + draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00",
                                                b"\x00\x00\x10\x00"])) + data[12:]
    return bytes(out + data)


class OpenPolicy:
    """A PushPolicy with no rules and no hooks: the fuzzer exercises the protocol, the
    quarantine and the ref moves (the rules have their own tests)."""

    limits = PushLimits()

    def check_ref(self, repo: object, update: object) -> None:
        return None

    def before_update(self, update: object, push_options: object) -> None:
        return None

    def updated(self, updates: object) -> None:
        pass

    def before_ack(self, updates: object, push_options: object) -> None:
        return None

    def after_push(self, updates: object, push_options: object) -> None:
        pass

    def progress(self, line: str) -> None:
        pass


def check_push(fx: PushFixture, workdir: Path, data: bytes) -> str:
    """Feed DATA to receive-pack on a copy of the template repo; check the invariants."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    path = workdir / "repo.git"
    shutil.copytree(fx.template, path)
    outside_before = tree_snapshot(workdir) - {p for p in tree_snapshot(workdir)
                                               if p.startswith("repo.git")}
    refs_before = Repo(str(path)).get_refs()
    reader = ChannelReader(io.BytesIO(data).read)
    written = bytearray()
    proto = SidebandProtocol(reader.read, written.extend, reader.recv)
    handler = ReceivePack(SingleRepoBackend(str(path)), [str(path)], proto, policy=OpenPolicy())
    started = time.monotonic()
    try:
        handler.handle()
        outcome = "answered"
    except PROTOCOL_ERRORS:
        outcome = "protocol-error"
    finally:
        handler.repo.close()
    assert time.monotonic() - started < 20, "receive-pack took too long"
    if outcome == "answered" and handler.result is not None:
        statuses = handler.result.statuses
        outcome = "updated" if any(v == "ok" for v in statuses.values()) else "rejected"
        # every refusal came with a reason the client will show
        assert all(v for v in statuses.values())
    # no write outside the repo, no quarantine left behind
    after = tree_snapshot(workdir)
    assert {p for p in after if not p.startswith("repo.git")} == outside_before, after
    assert not [p for p in (path / "objects").iterdir() if p.name.startswith("incoming-")]
    repo = Repo(str(path))
    try:
        refs_after = repo.get_refs()
        for name in refs_after:
            assert name == b"HEAD" or (name.startswith(b"refs/") and check_ref_format(name)), name
            assert not name.startswith(b"refs/gitserve/")
        changed = refs_after != refs_before
    finally:
        repo.close()
    if changed:
        report = upkeep.fsck_repo(path)
        assert report.ok, report.problems
    return outcome
