"""What arrives from another server (a `server-NAME` key) and is not a plain git command.

`route()` is asked by the SSH session before anything else when `[server] hostname` is
set: it tells who the connection really acts as and whether a peer command answers it.

- `USER=u SOC=git-receive-pack 'repo'` from server-SLAVE: a forwarded push, run as user u
  (Gitolite's redirect; from a user key it is refused: "'alice' is not a valid server name");
  `USER=u SOC=git-lfs-transfer 'repo' upload` likewise, a user's LFS upload to the slave;
- `CREATOR=u perms -c 'repo'` (Gitolite's, roles on stdin) and `mirror meta repo` (gitserve:
  creator, roles, description and HEAD as JSON on stdin) from the master: a wild repo's
  metadata, created here first if needed;
- `mirror state` from a peer: this host's seq per repo the two share (promote asks it);
- `mirror lfs-get REPO OID` from a server that mirrors REPO too: one LFS object (a slave's
  read-through of an object it lacks, mirror/lfsfill.py);
- any other command from a server key: a git command the session runs as that server
  (the master's mirror push, or a peer's fetch), or `info` and the like as user server-NAME.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from gitserve import adminrepo as admin, repoconf, repos
from gitserve.acl import wild
from gitserve.adminrepo import AdminState
from gitserve.fsutil import atomic_write
from gitserve.settings import Settings

from . import gate, state
from .config import repo_mirror, server_name

MAX_META = 1024 * 1024


@dataclass
class PeerIO:
    read_input: Callable[[int], bytes]  # stdin, capped
    out: Callable[[str], None]
    err: Callable[[str], None]
    recv: Callable[[int], bytes] | None = None  # stdin as a stream (LFS objects)
    send: Callable[[bytes], None] | None = None  # stdout as bytes (an LFS object)


@dataclass
class Route:
    user: str  # who the session acts as (the forwarded push's user for a redirect)
    command: str  # the command to run
    from_server: str = ""  # the peer's NAME when a server key connected
    redirected: bool = False  # a slave's forwarded push (case 3)
    answer: Callable[[PeerIO], int] | None = None  # a peer command, answered here


def route(settings: Settings, st: AdminState, user: str, command: str) -> Route:
    """How the session runs COMMAND from USER (raises gate.Refused with Gitolite's text)."""
    sender = server_name(user)
    redirect = gate.REDIRECT_RE.match(command)
    if sender is None:
        if redirect or gate.LFS_REDIRECT_RE.match(command):
            raise gate.Refused(gate.not_a_server(user))
        return Route(user, command)
    if redirect:
        forwarded_user, soc, repo = redirect.group(1), redirect.group(2), redirect.group(3)
        name = repos.parse_repo_arg(repo)
        gate.check_redirected(settings.server.hostname, name, _mirror(settings, st, name),
                              sender)
        return Route(forwarded_user, soc, from_server=sender, redirected=True)
    lfs_redirect = gate.LFS_REDIRECT_RE.match(command)
    if lfs_redirect:  # a user's LFS upload to a slave: stored here, with the pushes
        forwarded_user, name = lfs_redirect.group(1), repos.parse_repo_arg(lfs_redirect.group(2))
        gate.check_redirected(settings.server.hostname, name, _mirror(settings, st, name),
                              sender)
        return Route(forwarded_user, f"git-lfs-transfer {name} upload", from_server=sender,
                     redirected=True)
    creator_perms = gate.CREATOR_PERMS_RE.match(command)
    if creator_perms:
        creator, name = creator_perms.group(1), repos.parse_repo_arg(creator_perms.group(2))
        return Route(user, command, sender, answer=lambda io: _creator_perms(
            settings, st, sender, creator, name, io))
    words = command.split()
    if words[:2] == ["mirror", "meta"] and len(words) == 3:
        name = repos.parse_repo_arg(words[2])
        return Route(user, command, sender,
                     answer=lambda io: _meta(settings, st, sender, name, io))
    if words[:2] == ["mirror", "lfs-want"] and len(words) == 3:
        name = repos.parse_repo_arg(words[2])
        return Route(user, command, sender,
                     answer=lambda io: _lfs_want(settings, st, sender, name, io))
    if words[:2] == ["mirror", "lfs-put"] and len(words) == 5 and words[4].isdigit():
        name, oid, size = repos.parse_repo_arg(words[2]), words[3], int(words[4])
        return Route(user, command, sender,
                     answer=lambda io: _lfs_put(settings, st, sender, name, oid, size, io))
    if words[:2] == ["mirror", "lfs-get"] and len(words) == 4:
        name, oid = repos.parse_repo_arg(words[2]), words[3]
        return Route(user, command, sender,
                     answer=lambda io: _lfs_get(settings, st, sender, name, oid, io))
    if words == ["mirror", "state"]:
        return Route(user, command, sender, answer=lambda io: _state(settings, st, sender, io))
    return Route(user, command, from_server=sender)


def _mirror(settings: Settings, st: AdminState, name: str) -> Any:
    wild_info = repos.wild_info(settings, name) if repos.exists(settings, name) else None
    return repo_mirror(st.rules.options(name, wild=wild_info))


def ensure_repo(settings: Settings, name: str, creator: str | None = None) -> None:
    """Create NAME for its master's push when this slave does not have it yet."""
    if repos.exists(settings, name):
        return
    try:
        repos.create(settings, name, creator=creator)
    except repos.RepoError:
        if not repos.exists(settings, name):
            raise
    repoconf.apply_one(settings, admin.current(settings).rules, name)


def _apply_meta(settings: Settings, name: str, meta: dict[str, Any]) -> None:
    creator = meta.get("creator")
    ensure_repo(settings, name, creator if isinstance(creator, str) and creator else None)
    repo_dir = repos.path(settings, name)
    if isinstance(creator, str) and creator:
        wild.write_creator(repo_dir, creator)
    perms = meta.get("perms")
    if isinstance(perms, str):
        if perms.strip():
            repos.write_perms(settings, name, wild.parse_perms(perms))
        elif (repo_dir / wild.PERMS_FILE).exists():
            (repo_dir / wild.PERMS_FILE).unlink()
    description = meta.get("description")
    if isinstance(description, str):
        atomic_write(repo_dir / "description", description)
    head = meta.get("head")
    if isinstance(head, str) and head.startswith("refs/") and "\n" not in head:
        atomic_write(repo_dir / "HEAD", f"ref: {head}\n")


def _meta(settings: Settings, st: AdminState, sender: str, name: str, io: PeerIO) -> int:
    gate.check_master_push(settings.server.hostname, name, _mirror(settings, st, name), sender)
    raw = io.read_input(MAX_META)
    if len(raw) > MAX_META:
        io.err("FATAL: mirror meta: input too large\n")
        return 1
    try:
        meta = json.loads(raw.decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not an object")
        _apply_meta(settings, name, meta)
    except (ValueError, UnicodeDecodeError) as exc:
        io.err(f"FATAL: mirror meta: {exc}\n")
        return 1
    except repos.RepoError as exc:
        io.err(f"FATAL: {exc}\n")
        return 1
    return 0


def _creator_perms(settings: Settings, st: AdminState, sender: str, creator: str, name: str,
                   io: PeerIO) -> int:
    """Gitolite's `CREATOR=u perms -c 'repo'`: a Gitolite master feeding this slave."""
    gate.check_master_push(settings.server.hostname, name, _mirror(settings, st, name), sender)
    raw = io.read_input(MAX_META)
    try:
        _apply_meta(settings, name, {"creator": creator,
                                     "perms": raw.decode("utf-8")})
    except (ValueError, UnicodeDecodeError, repos.RepoError) as exc:
        io.err(f"FATAL: {exc}\n")
        return 1
    return 0


def _state(settings: Settings, st: AdminState, sender: str, io: PeerIO) -> int:
    """{repo: {"seq": N, "refs": digest}} for the repos mirrored both here and on SENDER."""
    hostname = settings.server.hostname
    found: dict[str, Any] = {}
    for name in repos.list_names(settings):
        mirror = _mirror(settings, st, name)
        members = {mirror.master, *mirror.copies}
        if hostname in members and sender in members:
            repo_dir = repos.path(settings, name)
            found[name] = {"seq": state.seq_of(repo_dir), "refs": state.refs_digest(repo_dir)}
    io.out(json.dumps(found) + "\n")
    return 0


MAX_OID_LIST = 64 * 1024 * 1024  # a million object ids


def _lfs_want(settings: Settings, st: AdminState, sender: str, name: str, io: PeerIO) -> int:
    """The master's LFS object ids on stdin; answers those this slave does not have."""
    from gitserve.lfs.repo import store_for
    from gitserve.lfs.store import valid_oid

    gate.check_master_push(settings.server.hostname, name, _mirror(settings, st, name), sender)
    raw = io.read_input(MAX_OID_LIST)
    store = store_for(settings, name)
    wanted = [o for o in raw.decode("ascii", "replace").split()
              if valid_oid(o) and not store.has(o)]
    io.out("".join(f"{o}\n" for o in wanted))
    return 0


def _lfs_put(settings: Settings, st: AdminState, sender: str, name: str, oid: str, size: int,
             io: PeerIO) -> int:
    """One LFS object from the master, streamed in and stored only if its sha256 and size
    match (gitserve.lfs.store: nothing half-written)."""
    from gitserve.lfs.repo import store_for
    from gitserve.lfs.store import LfsError

    gate.check_master_push(settings.server.hostname, name, _mirror(settings, st, name), sender)
    if io.recv is None:
        io.err("FATAL: mirror lfs-put: no input stream\n")
        return 1
    recv = io.recv

    def chunks() -> Any:
        while True:
            data = recv(65536)
            if not data:
                return
            yield data

    try:
        store_for(settings, name).receive(oid, size, chunks())
    except LfsError as exc:
        io.err(f"FATAL: mirror lfs-put: {exc}\n")
        return 1
    return 0



def _lfs_get(settings: Settings, st: AdminState, sender: str, name: str, oid: str,
             io: PeerIO) -> int:
    """One LFS object to a server that mirrors NAME too (a slave's read-through,
    mirror/lfsfill.py): `SIZE` on a line, then the bytes."""
    from gitserve.lfs.repo import store_for
    from gitserve.lfs.store import valid_oid

    hostname = settings.server.hostname
    mirror = _mirror(settings, st, name)
    members = {mirror.master, *mirror.copies}
    if hostname not in members or sender not in members or sender == hostname \
            or not repos.exists(settings, name):
        raise gate.Refused(f"{hostname}: '{name}' is not mirrored to '{sender}' from here")
    store = store_for(settings, name)
    size = store.size(oid) if valid_oid(oid) else None
    if size is None or io.send is None:
        io.err(f"FATAL: mirror lfs-get: no object {oid[:80]} in '{name}'\n")
        return 1
    io.send(f"{size}\n".encode())
    for chunk in store.read_chunks(oid):
        io.send(chunk)
    return 0
