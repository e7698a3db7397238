"""A git request: one service (`git-upload-pack`, `git-receive-pack`, `git-upload-archive`)
on one repository for one verified user, from any transport. `authorize()` is check #1;
`handler()` builds the dulwich handler that serves it, its collaborators (the settings, a
push's policy) passed to the constructor."""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol, Sequence

from gitserve import adminrepo, repos
from gitserve.acl import WildInfo
from gitserve.adminrepo import AdminState
from gitserve.git import v2
from gitserve.git.archive import UploadArchive
from gitserve.git.pushhooks import PushHook
from gitserve.git.receive import ReceivePack
from gitserve.git.repo import SingleRepoBackend
from gitserve.git.upload import UploadPack
from gitserve.metrics import NULL as NULL_METRICS
from gitserve.settings import Settings

from .access import authorize
from .mirroring import missing_copy, peer_access, user_gate
from .push import RepoPushPolicy

log = logging.getLogger(__name__)

# service -> the access check #1 asks for
SERVICES: dict[str, str] = {
    "git-upload-pack": "R",
    "git-receive-pack": "W",
    "git-upload-archive": "R",
}


class GitHandler(Protocol):
    """What a transport does with a handler: run it, then close its repository."""

    repo: Any

    def handle(self) -> None: ...


class GitRequest:
    """SERVICE on repo NAME for USER (from IP) under the admin STATE in force; TRANSPORT
    ("ssh", "http") labels METRICS; HOOKS are the push hooks app.py built; NOTICE gets a
    line for the user outside the git protocol (a wild repo's `Initialized ...`);
    MAY_CREATE false: check #1 never creates a wild repo (anonymous HTTP). Mirroring:
    FROM_SERVER names the peer when a server-NAME key connected; REDIRECTED, a slave
    forwarding USER's push (then USER's rules apply, as for a direct push)."""

    def __init__(self, settings: Settings, state: AdminState, user: str, ip: str,
                 service: str, name: str, *, transport: str,
                 hooks: Sequence[PushHook] = (), metrics: Any = NULL_METRICS,
                 notice: Callable[[str], None] | None = None, may_create: bool = True,
                 from_server: str = "", redirected: bool = False) -> None:
        if service not in SERVICES:
            raise ValueError(f"not a git service: {service!r}")
        self.settings = settings
        self.state = state
        self.user = user
        self.ip = ip
        self.service = service
        self.name = name
        self.access = SERVICES[service]
        self.path = repos.path(settings, name)
        self.transport = transport
        self.hooks = tuple(hooks)
        self.metrics = metrics
        self._notice = notice or (lambda line: log.info("%s", line))
        self._may_create = may_create
        self._create_on: str | None = None  # a missing wild copy: the master that creates it
        self.from_server = from_server
        self.redirected = redirected
        self._wild: WildInfo | None = None
        self._authorized = False

    @property
    def _peer(self) -> bool:
        """A mirroring peer acting as itself (the master's push, a promote's fetch)."""
        return bool(self.from_server) and not self.redirected

    def authorize(self) -> None:
        """Check #1 (and the wild-repo creation a user with C gets), or a mirroring peer's
        access; raises Denied."""
        if self._peer:
            self._wild = peer_access(self.settings, self.state, self.user, self.from_server,
                                     self.name, self.access)
        elif not self.from_server and (master := missing_copy(
                self.settings, self.state, self.name, self.user, self.access)) is not None:
            self._create_on = master  # the master creates it (check #1 there, as this user)
        else:
            self._wild = authorize(self.settings, self.state, self.user, self.ip, self.name,
                                   self.access, notice=self._notice, may_create=self._may_create)
        self._authorized = True

    def mirror_master(self) -> str | None:
        """Mirroring's gate for a user's request (after check #1): the master this push must
        be forwarded to (redirectOK), None to serve it here; raises Denied where Gitolite's
        mirroring refuses. Nothing to do without `[server] hostname` or for a peer."""
        if not self.settings.server.hostname or self.from_server:
            return None
        if self._create_on is not None:
            return self._create_on
        return user_gate(self.settings, self.state, self.name, self.access, self._notice)

    def _backend(self) -> SingleRepoBackend:
        if not self._authorized:  # a wiring mistake, never a user's: no handler unchecked
            raise RuntimeError(f"{self.service} {self.name}: handler before check #1")
        return SingleRepoBackend(str(self.path), show_hidden=self.user == adminrepo.BUILDER)

    def handler(self, proto: Any, *, protocol_version: int = 0, stateless_rpc: bool = False,
                advertise_refs: bool = False,
                keepalive: Callable[[], None] | None = None) -> GitHandler:
        """The handler serving this request over PROTO (a SidebandProtocol). PROTOCOL_VERSION
        2 picks the v2 upload-pack conversation (stateful transports: ssh); KEEPALIVE goes to
        a push's hooks (HTTP: an empty progress packet while a build is quiet)."""
        backend = self._backend()
        args = [str(self.path)]
        if self.service == "git-upload-archive":
            return UploadArchive(backend, args, proto)
        if self.service == "git-upload-pack":
            if protocol_version == 2 and not stateless_rpc:
                return v2.UploadPackV2Handler(backend, args, proto, settings=self.settings)
            return UploadPack(backend, args, proto, settings=self.settings,
                              stateless_rpc=stateless_rpc, advertise_refs=advertise_refs)
        policy = RepoPushPolicy(self.settings, self.state, self.user, self.ip, self.name,
                                self.path, self._wild, progress=proto.progress_line,
                                hooks=self.hooks, metrics=self.metrics,
                                transport=self.transport, keepalive=keepalive,
                                mirror_sender=self.from_server if self._peer else "")
        return ReceivePack(backend, args, proto, policy=policy,
                           pack_backend=self.settings.server.pack_backend,
                           stateless_rpc=stateless_rpc, advertise_refs=advertise_refs)

    def upload_v2(self, proto: Any) -> v2.UploadPackV2:
        """Protocol v2 upload-pack over a stateless transport (HTTP: `advertise()` answers
        info/refs, `serve_command()` one POST); the caller closes `.repo`."""
        repo = self._backend().open_repository(str(self.path))
        return v2.UploadPackV2(repo, proto, self.settings)
