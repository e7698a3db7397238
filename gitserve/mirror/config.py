"""Who mirrors what: `option mirror.*` of one repository, and where the peers are.

Gitolite's option names (3.6.12 renamed slaves to copies and rewrites `mirror.slaves` to
`mirror.copies`; both are read here, as are its numbered forms `mirror.slaves-1`):

    option mirror.master     = NAME              the one server that takes pushes
    option mirror.slaves     = NAME NAME         servers it pushes every change to
    option mirror.slaves.nosync = NAME           listed slaves pushed only by `mirror push`
    option mirror.redirectOK = all | NAME ...    slaves that forward a user's push to the master
    option mirror.sync       = N                 gitserve: a push is acknowledged once N
                                                 slaves have it (default 0: asynchronous)

With `[server] hostname` unset nothing here applies (Gitolite: "nothing, and I mean
NOTHING, happens if HOSTNAME is not set").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from gitserve.errors import GitserveError

SERVER_PREFIX = "server-"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SLAVES_RE = re.compile(r"^mirror\.(?:slaves|copies)(?P<rest>.*)$")

LOCAL, MASTER, COPY, ELSEWHERE = "local", "master", "copy", "elsewhere"


class MirrorError(GitserveError):
    """A mirroring setting or operation that cannot go on (message is one line)."""


@dataclass(frozen=True)
class RepoMirror:
    """The mirror options of one repository as one server sees them."""

    master: str = ""
    slaves: tuple[str, ...] = ()  # pushed to after every change (async, or counted by sync)
    manual: tuple[str, ...] = ()  # `.nosync`: only `mirror push` sends to these
    redirect_ok: tuple[str, ...] = ()  # slaves whose forwarded pushes the master accepts
    sync: int = 0  # slaves that must have a push before it is acknowledged

    @property
    def copies(self) -> tuple[str, ...]:
        """Every listed slave, automatic or manual."""
        return tuple(dict.fromkeys(self.slaves + self.manual))

    def mode(self, hostname: str) -> str:
        """Gitolite's mode(): local, master, copy - or ELSEWHERE ("mirrored but not here")."""
        if not hostname:
            return LOCAL
        if self.master == hostname:
            return MASTER
        if hostname in self.copies:
            return COPY
        if not self.master and not self.copies:
            return LOCAL
        return ELSEWHERE

    def trusts(self, slave: str) -> bool:
        return slave in self.redirect_ok


def repo_mirror(options: Mapping[str, str]) -> RepoMirror:
    """RepoMirror from a repo's `option` lines (acl Rules.options: last one wins per name)."""
    master = (options.get("mirror.master") or "").split()
    slaves: dict[str, None] = {}
    manual: dict[str, None] = {}
    redirect: list[str] = []
    for key in sorted(options):
        m = _SLAVES_RE.match(key)
        if m:
            target = manual if m.group("rest").startswith(".nosync") else slaves
            for name in options[key].split():
                target[name] = None
        elif key.startswith("mirror.redirectOK"):
            redirect.extend(options[key].split())
    for name in manual:
        slaves.pop(name, None)
    everyone = tuple(dict.fromkeys([*slaves, *manual]))
    trusted = everyone if redirect == ["all"] else tuple(n for n in redirect if n in everyone)
    raw_sync = (options.get("mirror.sync") or "0").strip()
    sync = int(raw_sync) if raw_sync.isdigit() else 0
    return RepoMirror(master=master[0] if master else "", slaves=tuple(slaves),
                      manual=tuple(manual), redirect_ok=trusted, sync=min(sync, len(slaves)))


def server_name(user: str) -> str | None:
    """NAME for a keydir user `server-NAME` (a peer, never a person), else None."""
    if user.startswith(SERVER_PREFIX) and NAME_RE.match(user[len(SERVER_PREFIX):]):
        return user[len(SERVER_PREFIX):]
    return None


@dataclass(frozen=True)
class Peer:
    name: str
    user: str
    host: str
    port: int

    def url(self, repo: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{self.user}@{host}:{self.port}/{repo}"


@dataclass
class Peers:
    by_name: dict[str, Peer] = field(default_factory=dict)

    def get(self, name: str) -> Peer:
        try:
            return self.by_name[name]
        except KeyError:
            raise MirrorError(f"no address for server '{name}' in [mirror] peers") from None


def parse_peers(text: str) -> Peers:
    """`NAME=[USER@]HOST[:PORT] ...` (whitespace or commas between entries)."""
    found: dict[str, Peer] = {}
    for entry in re.split(r"[\s,]+", text.strip()):
        if not entry:
            continue
        name, sep, address = entry.partition("=")
        if not sep or not NAME_RE.match(name) or not address:
            raise MirrorError(f"[mirror] peers: '{entry}' is not NAME=[USER@]HOST[:PORT]")
        user, at, hostport = address.rpartition("@")
        user = user if at else "git"
        port = 22
        host = hostport
        m = re.fullmatch(r"\[(?P<h>[^\]]+)\](?::(?P<p>\d+))?|(?P<h2>[^:]+)(?::(?P<p2>\d+))?",
                         hostport)
        if not m or not re.fullmatch(r"[A-Za-z0-9._-]+", user):
            raise MirrorError(f"[mirror] peers: '{entry}' is not NAME=[USER@]HOST[:PORT]")
        host = m.group("h") or m.group("h2")
        raw_port = m.group("p") or m.group("p2")
        if raw_port:
            port = int(raw_port)
            if not 0 < port < 65536:
                raise MirrorError(f"[mirror] peers: bad port in '{entry}'")
        found[name] = Peer(name, user, host, port)
    return Peers(found)
