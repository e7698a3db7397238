"""What one exec request runs: a git service on a repo, or a command from the table.

This is Gitolite's gitolite-shell: parse the command; for a git service, gitserve.gitrequest
does check #1 (read or write access to the repo, ref `any`) before any git protocol starts,
auto-creates wild repos for users with `C`, and builds the dulwich handler (a push's with
check #2 and the push hooks in its policy); this adapter gives it the channel's streams.
Every domain error (GitserveError) ends here as one `FATAL: ...` line.

It knows nothing of the transport (as dulwich's server.py keeps protocol and transport
apart): the built-in paramiko server passes its channel, `gitserve shell` (the forced
command behind the system OpenSSH) passes stdin/stdout/stderr; both are a `ByteChannel`.
The command table and the push hooks come from gitserve.app (through the transport).
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dulwich.errors import GitProtocolError, HangupException

from gitserve import adminrepo, audit, repos
from gitserve.adminrepo import AdminState
from gitserve.errors import GitserveError
from gitserve.git import v2
from gitserve.git.pushhooks import PushHook
from gitserve.git.receive import ReceivePack
from gitserve.git.sideband import ChannelReader, SidebandProtocol
from gitserve.gitrequest import Denied, GitRequest
from gitserve.metrics import NULL as NULL_METRICS, pushed
from gitserve.mirror import gate as mirror_gate
from gitserve.mirror import peercmds as mirror_peer
from gitserve.mirror.config import repo_mirror
from gitserve.mirror import proxy as mirror_proxy
from gitserve.mirror.transport import Transport
from gitserve.settings import Settings

from .cmd import base as commands
from .cmd import builtin

log = logging.getLogger(__name__)
# a user's refusal (typo, denied repo) is in the server log for the admin, not on its console:
# the user got it already, and the console is for the server's own problems
USER_ERROR = {"console": False}

_GIT_CMD = re.compile(r"^(git[- ](?:upload-pack|receive-pack|upload-archive))\s+(.*)$", re.S)


class ByteChannel(Protocol):
    """The byte streams of one session: a paramiko Channel has exactly these methods."""

    def recv(self, nbytes: int) -> bytes: ...

    def sendall(self, data: bytes) -> None: ...

    def sendall_stderr(self, data: bytes) -> None: ...


@dataclass
class Conn:
    """The parts of a connection a command needs: who, from where, its I/O, and what the
    server was wired with (gitserve.app): the ssh command table and the push hooks."""

    settings: Settings
    user: str
    ip: str
    chan: ByteChannel
    git_protocol: str = ""  # the client's GIT_PROTOCOL (env request or sshd's AcceptEnv)
    commands: commands.CommandTable = field(default_factory=dict)
    hooks: Sequence[PushHook] = ()
    metrics: Any = NULL_METRICS  # gitserve.metrics.Metrics of the server (counts git work)
    # mirroring (gitserve/mirror): the peer NAME when a server-NAME key connected; with
    # `redirected`, a slave forwarding user's push (conn.user is then that user)
    from_server: str = ""
    redirected: bool = False

    def out(self, text: str) -> None:
        self.chan.sendall(text.encode("utf-8", "replace"))

    def err(self, text: str) -> None:
        self.chan.sendall_stderr(text.encode("utf-8", "replace"))


def run(settings: Settings, chan: ByteChannel, command: str, user: str, peer: str,
        env: dict[str, str] | None = None, table: commands.CommandTable | None = None,
        hooks: Sequence[PushHook] = (), metrics: Any = None) -> int:
    """Run COMMAND for the verified USER (connected from PEER) on CHAN with the ssh commands
    of TABLE (default: the core ones) and, for a push, HOOKS in that order; returns the exit
    status. ENV holds the client environment the transport accepted (GIT_PROTOCOL); METRICS
    (gitserve.metrics.Metrics, None: nothing) counts the git work."""
    if table is None:
        table = commands.table(builtin.core_commands())
    conn = Conn(settings, user, peer, chan, (env or {}).get("GIT_PROTOCOL", ""), table, hooks,
                metrics or NULL_METRICS)
    try:
        state = adminrepo.current(settings)
    except Exception as exc:  # noqa: BLE001 - a broken admin repo: say so, don't crash
        log.exception("cannot load the admin repo")
        conn.err(f"FATAL: server configuration error: {exc}\n")
        return 1
    command = command.strip()
    if "\x00" in command:
        conn.err("FATAL: invalid command: NUL byte\n")
        return 1
    try:
        if settings.server.hostname:  # mirroring: a peer's command, or a slave's forwarded push
            route = mirror_peer.route(settings, state, user, command)
            if route.answer is not None:
                return route.answer(mirror_peer.PeerIO(
                    lambda limit: commands.CommandContext(
                        settings, user, peer, state, conn.out, conn.err,
                        conn.chan.recv).read_input(limit), conn.out, conn.err,
                    conn.chan.recv, conn.chan.sendall))
            conn.user, conn.from_server, conn.redirected = (route.user, route.from_server,
                                                             route.redirected)
            command = route.command
        match = _GIT_CMD.match(command)
        if match:
            verb = match.group(1).replace(" ", "-", 1)
            return run_git(conn, state, verb, match.group(2))
        return run_command(conn, state, command or "info")
    except commands.ScriptError as exc:  # Gitolite's shell-script commands: `die` as is
        log.warning("refused %s: %s", user, " ".join(str(exc).split()), extra=USER_ERROR)
        conn.err(f"{exc}\n")
        return 1
    except GitserveError as exc:  # every refusal and domain error: one line, Gitolite's form
        log.warning("refused %s: %s", user, " ".join(str(exc).split()), extra=USER_ERROR)
        conn.err(f"FATAL: {exc}\n")
        return commands.FATAL_STATUS


def run_command(conn: Conn, state: AdminState, line: str) -> int:
    words = line.split()
    cmd = conn.commands.get(words[0])
    if cmd is None:
        raise commands.CommandError(f"unknown git/gitolite command: '{line}'")
    if not commands.REMOTE_COMMAND_PATT.match(line):
        raise commands.CommandError(f"suspicious characters loitering about '{line}'")
    if "../" in line:
        raise commands.CommandError("no relative paths allowed anywhere!")
    if conn.settings.server.hostname:  # mirroring: a slave's copies change on the master only
        target = mirror_gate.changed_repo(words[0], words[1:])
        if target is not None:
            try:
                name = repos.check_name(target.removesuffix(".git"))
            except repos.RepoError:
                name = None  # a bad name: the command itself says so
            if name is not None:  # mirror_gate.Refused is one FATAL line
                mirror_gate.check_local_change(
                    conn.settings.server.hostname, name,
                    repo_mirror(state.rules.options(name, wild=repos.wild_info(conn.settings, name)
                                                    if repos.exists(conn.settings, name) else None)))
    ctx = commands.CommandContext(conn.settings, conn.user, conn.ip, state, conn.out, conn.err,
                                  conn.chan.recv, conn.commands, write=conn.chan.sendall)
    audit.record(conn.settings, user=conn.user, ip=conn.ip, op=words[0], result="allowed")
    return cmd.fn(ctx, words[1:])


# --- git services ---------------------------------------------------------------------

def _repo_arg(raw: str) -> str:
    raw = raw.strip()
    try:
        parts = shlex.split(raw)
    except ValueError:
        raise Denied(f"invalid repo name: {raw!r}") from None
    if len(parts) != 1:
        raise Denied(f"invalid repo name: {raw!r}")
    return repos.parse_repo_arg(parts[0])


def run_git(conn: Conn, state: AdminState, verb: str, raw_arg: str) -> int:
    """A git service over this channel: gitserve.gitrequest decides and builds the handler;
    this adapter gives it the channel's streams (counted) and the client's protocol version."""
    m = conn.metrics
    request = GitRequest(conn.settings, state, conn.user, conn.ip, verb, _repo_arg(raw_arg),
                         transport="ssh", hooks=conn.hooks, metrics=m,
                         notice=lambda line: conn.err(line + "\n"),
                         from_server=conn.from_server, redirected=conn.redirected)
    try:
        request.authorize()
    except Denied:
        m.access_denied.labels("ssh", "1").inc()
        raise
    master = request.mirror_master()
    if master is not None:  # redirectOK: the master takes this push, as this user (a
        # MirrorError, e.g. no address for the master in [mirror] peers, is one FATAL line)
        return mirror_proxy.forward(Transport(conn.settings), master, conn.user, request.name,
                                    conn.chan.recv, conn.chan.sendall, conn.chan.sendall_stderr)
    m.git_requests.labels("ssh", verb).inc()
    sent = m.git_bytes.labels("ssh", "sent")
    received = m.git_bytes.labels("ssh", "received")

    def send(data: Any) -> None:
        sent.inc(len(data))
        conn.chan.sendall(data)

    def recv(size: int) -> bytes:
        data = conn.chan.recv(size)
        received.inc(len(data))
        return data

    reader = ChannelReader(recv)
    proto = SidebandProtocol(reader.read, send, reader.recv)
    version = v2.requested_version(conn.git_protocol)
    handler = request.handler(proto, protocol_version=version if verb == "git-upload-pack" else 0)
    try:
        if verb != "git-upload-archive" and version == 1:
            proto.write_pkt_line(b"version 1\n")  # v1 is v0 after this line, as git says it
        handler.handle()
        proto.flush()
        if isinstance(handler, ReceivePack) and pushed(handler.result):
            m.pushes.labels("ssh").inc()
    except HangupException:
        return 1  # the client hung up mid-conversation: nobody left to tell
    except GitProtocolError as exc:
        conn.err(f"FATAL: protocol error: {' '.join(str(exc).split())}\n")
        return 1
    finally:
        handler.repo.close()
    return 0
