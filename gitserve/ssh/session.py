"""What one exec request runs: a git service on a repo, or a command from the table.

This is Gitolite's gitolite-shell: parse the command, check #1 (read or write access to
the repo, ref `any`) before any git protocol starts, auto-create wild repos for users with
`C`, then hand the channel to the dulwich handler with check #2 wired into its update step.

It knows nothing of the transport (as dulwich's server.py keeps protocol and transport
apart): the built-in paramiko server passes its channel, `gitserve shell` (the forced
command behind the system OpenSSH) passes stdin/stdout/stderr; both are a `ByteChannel`.
The command table and the push hooks come from gitserve.app (through the transport).
"""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, Protocol

from dulwich.errors import GitProtocolError, HangupException

from gitserve import adminrepo, audit, repoconf, repos
from gitserve.acl import WildInfo
from gitserve.acl.errors import AccessError
from gitserve.adminrepo import AdminState
from gitserve.git.pushhooks import PushContext, PushHook, RefUpdate
from gitserve.acl.inspect_dulwich import DulwichInspector
from gitserve.git import vrefprog
from gitserve.git.receive import ReceivePack
from gitserve.git.repo import SingleRepoBackend
from gitserve.git.sideband import ChannelReader, SidebandProtocol
from gitserve.git.archive import UploadArchive
from gitserve.git import v2
from gitserve.git.upload import UploadPack
from gitserve.metrics import NULL as NULL_METRICS, count_ref_denials, pushed
from gitserve.mirror import gate as mirror_gate, peercmds as mirror_peer
from gitserve.mirror import promotion as mirror_promotion, proxy as mirror_proxy
from gitserve.mirror import state as mirror_state
from gitserve.mirror.transport import Transport
from gitserve.mirror.config import ELSEWHERE, MirrorError, repo_mirror
from gitserve.mirror.syncer import MIRROR_SENDER
from gitserve.settings import Settings

from .cmd import base as commands
from .cmd import builtin
from .cmd.writable import down_message

log = logging.getLogger(__name__)

ServiceClass = (type[UploadPack] | type[ReceivePack] | type[UploadArchive]
                | type[v2.UploadPackV2Handler])
GIT_SERVICES: dict[str, tuple[str, ServiceClass]] = {
    "git-upload-pack": ("R", UploadPack),
    "git-receive-pack": ("W", ReceivePack),
    "git-upload-archive": ("R", UploadArchive),
}
# the `ng` reason of a ref the access rules refused (git's own wording for a hook's refusal)
HOOK_DECLINED = "hook declined"
_GIT_CMD = re.compile(r"^(git[- ](?:upload-pack|receive-pack|upload-archive))\s+(.*)$", re.S)


class Denied(Exception):
    """Check #1 failed: the text after `FATAL: `."""


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
    if settings.server.hostname:  # mirroring: a peer's command, or a slave's forwarded push
        try:
            route = mirror_peer.route(settings, state, user, command)
            if route.answer is not None:
                return route.answer(mirror_peer.PeerIO(
                    lambda limit: commands.CommandContext(
                        settings, user, peer, state, conn.out, conn.err,
                        conn.chan.recv).read_input(limit), conn.out, conn.err,
                    conn.chan.recv))
        except (mirror_gate.Refused, repos.RepoError) as exc:
            log.warning("refused %s: %s", user, exc)
            conn.err(f"FATAL: {exc}\n")
            return 1
        conn.user, conn.from_server, conn.redirected = route.user, route.from_server, route.redirected
        command = route.command
    match = _GIT_CMD.match(command)
    try:
        if match:
            verb = match.group(1).replace(" ", "-", 1)
            return run_git(conn, state, verb, match.group(2))
        return run_command(conn, state, command or "info")
    except commands.ScriptError as exc:  # Gitolite's shell-script commands: `die` as is
        log.warning("refused %s: %s", user, " ".join(str(exc).split()))
        conn.err(f"{exc}\n")
        return 1
    except (Denied, commands.CommandError, repos.RepoError) as exc:
        log.warning("refused %s: %s", user, " ".join(str(exc).split()))
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
                mirror_gate.check_local_change(
                    conn.settings.server.hostname, name,
                    repo_mirror(state.rules.options(name, wild=repos.wild_info(conn.settings, name)
                                                    if repos.exists(conn.settings, name) else None)))
            except mirror_gate.Refused as exc:
                raise commands.CommandError(str(exc)) from None
            except repos.RepoError:
                pass  # a bad name: the command itself says so
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


def check_access(conn: Conn, state: AdminState, name: str, aa: str) -> WildInfo | None:
    """Check #1 (and wild-repo auto-create); returns the repo's WildInfo or None."""
    settings, user = conn.settings, conn.user
    rules = state.rules
    if user == adminrepo.BUILDER:
        if aa != "R" or not repos.exists(settings, name):
            raise Denied(f"{aa} any {name} {user} DENIED by fallthru\n"
                         "(or you mis-spelled the reponame)")
        return None
    exists = repos.exists(settings, name)
    if not exists and rules.can_create(name, user):
        try:
            repos.create(settings, name, creator=user)
            conn.err(repos.initialized_line(settings, name) + "\n")
            repoconf.apply_one(settings, rules, name)
            audit.record(settings, user=user, ip=conn.ip, repo=name, op="C", result="created")
        except repos.RepoError:
            pass  # a racing creator won; the rules below decide for this user
        exists = repos.exists(settings, name)
    wild = repos.wild_info(settings, name) if exists else None
    decision = rules.check(name, user, aa, "any", wild=wild, exists=exists)
    audit.record(settings, user=user, ip=conn.ip, repo=name, op=aa,
                 result="allowed" if decision.allowed else "denied",
                 reason=None if decision.allowed else decision.message)
    if not decision.allowed:
        raise Denied(f"{decision.message}\n(or you mis-spelled the reponame)")
    if aa != "R":
        down = down_message(settings, name)  # `writable ... off`
        if down is not None:
            raise Denied(down.rstrip("\n"))
    if not exists:
        if name in rules.repo_names():
            try:
                repos.create(settings, name)  # named in the conf but not compiled yet
            except repos.RepoError:
                pass
        if not repos.exists(settings, name):
            # allowed by a pattern nobody may create from: nothing to serve
            raise Denied(f"{aa} any {name} {user} DENIED by fallthru\n"
                         "(or you mis-spelled the reponame)")
    return wild


def _mirror_gate(conn: Conn, state: AdminState, name: str, aa: str) -> str | None:
    """Gitolite's mirroring pre_git for a user: refuse, or name the master to forward to.
    On a master with failed mirror pushes, their status goes to stderr (as Gitolite's)."""
    settings = conn.settings
    hostname = settings.server.hostname
    mirror = repo_mirror(state.rules.options(name, wild=repos.wild_info(settings, name)))
    try:
        verdict = mirror_gate.check_user(hostname, name, mirror, aa)
    except mirror_gate.Refused as exc:
        raise Denied(str(exc)) from None
    if verdict.redirect_to is None and mirror.mode(hostname) != "local":
        repo_dir = repos.path(settings, name)
        for slave in mirror_state.failed_slaves(repo_dir):
            conn.err(mirror_state.status_text(name, repo_dir, slave))
    return verdict.redirect_to


def _peer_access(conn: Conn, state: AdminState, name: str, aa: str) -> WildInfo | None:
    """A server key: reads of any repo mirrored here (promote fetches), and the master's
    pushes (case 2: no access rules; it carries what the master allowed)."""
    settings, sender = conn.settings, conn.from_server
    hostname = settings.server.hostname
    exists = repos.exists(settings, name)
    mirror = repo_mirror(state.rules.options(
        name, wild=repos.wild_info(settings, name) if exists else None))
    if aa == "R":  # only the servers that mirror this repo (promote fetches from them)
        if mirror.mode(hostname) == ELSEWHERE or not exists \
                or sender not in (mirror.master, *mirror.copies):
            raise Denied(f"R any {name} {conn.user} DENIED by fallthru\n"
                         "(or you mis-spelled the reponame)")
        return repos.wild_info(settings, name)
    try:
        mirror_gate.check_master_push(hostname, name, mirror, sender)
    except mirror_gate.Refused as exc:
        # a slave promoted to master pushes the admin repo that says so (checked per ref)
        if not mirror_promotion.may_announce(hostname, name, mirror, sender):
            raise Denied(str(exc)) from None
    try:
        mirror_peer.ensure_repo(settings, name)
    except repos.RepoError as exc:
        raise Denied(str(exc)) from None
    return repos.wild_info(settings, name)


def run_git(conn: Conn, state: AdminState, verb: str, raw_arg: str) -> int:
    name = _repo_arg(raw_arg)
    aa, handler_cls = GIT_SERVICES[verb]
    if verb == "git-upload-pack" and v2.requested(conn.git_protocol):
        handler_cls = v2.UploadPackV2Handler
    m = conn.metrics
    try:
        if conn.from_server and not conn.redirected:
            wild = _peer_access(conn, state, name, aa)
        else:
            wild = check_access(conn, state, name, aa)
    except Denied:
        m.access_denied.labels("ssh", "1").inc()
        raise
    if conn.settings.server.hostname and not conn.from_server:
        master = _mirror_gate(conn, state, name, aa)
        if master is not None:  # redirectOK: the master takes this push, as this user
            try:
                return mirror_proxy.forward(Transport(conn.settings), master, conn.user, name,
                                            conn.chan.recv, conn.chan.sendall,
                                            conn.chan.sendall_stderr)
            except MirrorError as exc:  # e.g. no address for the master in [mirror] peers
                raise Denied(str(exc)) from None
    m.git_requests.labels("ssh", verb).inc()
    path = str(repos.path(conn.settings, name))
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
    backend = SingleRepoBackend(path, show_hidden=conn.user == adminrepo.BUILDER)
    handler = handler_cls(backend, [path], proto)
    handler.settings = conn.settings
    if isinstance(handler, ReceivePack):
        _wire_push(handler, conn, state, name, path, wild, proto)
        count_ref_denials(handler, m, "ssh")
    try:
        if verb != "git-upload-archive" and v2.requested_version(conn.git_protocol) == 1:
            proto.write_pkt_line(b"version 1\n")  # v1 is v0 after this line, as git says it
        handler.handle()
        proto.flush()
        if isinstance(handler, ReceivePack) and pushed(handler):
            m.pushes.labels("ssh").inc()
    except HangupException:
        return 1  # the client hung up mid-conversation: nobody left to tell
    except GitProtocolError as exc:
        conn.err(f"FATAL: protocol error: {' '.join(str(exc).split())}\n")
        return 1
    finally:
        handler.repo.close()
    return 0


def _wire_push(handler: ReceivePack, conn: Conn, state: AdminState, name: str, path: str,
               wild: WildInfo | None, proto: SidebandProtocol) -> None:
    settings, user, rules = conn.settings, conn.user, state.rules
    is_admin_repo = name == repos.ADMIN_REPO
    inspector = DulwichInspector(handler.repo)
    program = vrefprog.runner(settings.home, settings.repos_dir, name, Path(path), user)

    def check_ref(update: RefUpdate) -> str | None:
        if conn.from_server and not conn.redirected:
            return mirrored_ref(update)
        try:
            decision = rules.check_update(name, user, update.ref, update.old, update.new,
                                          inspector, wild=wild, program=program)
        except AccessError as exc:  # e.g. a ref name Gitolite refuses outright
            proto.progress_line(f"FATAL: {exc}")
            proto.progress_line(f"error: {HOOK_DECLINED} to update {update.ref}")
            _audit_ref(conn, name, update, "rejected", str(exc))
            return HOOK_DECLINED
        except Exception as exc:  # noqa: BLE001 - refuse the ref, never crash the push
            log.exception("check #2 failed for %s %s", name, update.ref)
            return f"cannot check this update: {exc}"
        for note in decision.notes:
            proto.progress_line(note)
        if not decision.allowed:
            # Gitolite's update hook dies with FATAL and git's receive-pack then says it
            # declined the ref: users and scripts match on both lines
            # split, not splitlines: a deny message ending in a newline shows Gitolite's
            # blank `remote:` line after it
            for i, line in enumerate(decision.message.split("\n")):
                proto.progress_line(f"FATAL: {line}" if i == 0 else line)
            proto.progress_line(f"error: {HOOK_DECLINED} to update {update.ref}")
            _audit_ref(conn, name, update, "rejected", decision.message)
            log.warning("push to %s %s refused: %s", name, update.ref, decision.message)
            return HOOK_DECLINED
        if is_admin_repo and update.ref == adminrepo.ADMIN_BRANCH:
            if update.is_delete:
                return "the admin repo's branch cannot be deleted"
            # the handler's repo: it sees the push's quarantined objects
            reason = adminrepo.validate_commit(handler.repo, update.new, settings.hooks_dir,
                                               settings.server.hostname)
            if reason:
                proto.progress_line(f"FATAL: {reason}")
                _audit_ref(conn, name, update, "rejected", reason)
                return reason
        return None

    def mirrored_ref(update: RefUpdate) -> str | None:
        """The master's state comes as it is; an admin tree is still checked (and, from a
        promoted slave, must name it the master)."""
        if not (is_admin_repo and update.ref == adminrepo.ADMIN_BRANCH):
            return None
        if update.is_delete:
            return "the admin repo's branch cannot be deleted"
        reason = mirror_promotion.check_admin_push(
            handler.repo, update.new, settings.server.hostname, conn.from_server,
            repo_mirror(rules.options(name)))
        reason = reason or adminrepo.validate_commit(
            handler.repo, update.new, settings.hooks_dir, settings.server.hostname)
        if reason:
            proto.progress_line(f"FATAL: {reason}")
            _audit_ref(conn, name, update, "rejected", reason)
        return reason

    def on_updated(updates: list[RefUpdate]) -> None:
        for u in updates:
            _audit_ref(conn, name, u, "updated", None)
            log.info("push %s %s %s..%s by %s", name, u.ref, u.old[:12], u.new[:12], user)
        created = [u.ref for u in updates if u.is_create]
        if created:
            repos.head_after_push(Path(path), created)
        if is_admin_repo and any(u.ref == adminrepo.ADMIN_BRANCH for u in updates):
            made = adminrepo.compile(settings)
            # what Gitolite's compile says on the admin push: its WARNINGs, then git init's
            fresh = adminrepo.current(settings)
            refused = repoconf.refused_keys(settings, fresh.rules)
            for warning in [*fresh.rules.messages, *refused, *getattr(fresh, "warnings", ())]:
                proto.progress_line(f"WARNING: {warning}")
            for repo_made in made:
                proto.progress_line(repos.initialized_line(settings, repo_made))
            warning = adminrepo.sync_authorized_keys(settings)
            if warning:
                proto.progress_line(warning)
        if is_admin_repo:
            stored = [u.ref for u in updates if u.ref != adminrepo.ADMIN_BRANCH and not u.is_delete]
            if stored:
                proto.progress_line(adminrepo.not_applied_note(stored))

    handler.check_ref = check_ref
    handler.on_updated = on_updated
    handler.hooks = conn.hooks
    handler.ctx = PushContext(settings=settings, repo_name=name, repo_path=Path(path), user=user,
                              options=rules.options(name, wild=wild),
                              progress=proto.progress_line,
                              extra={MIRROR_SENDER: conn.from_server}
                              if conn.from_server and not conn.redirected else {})


def _audit_ref(conn: Conn, repo: str, u: RefUpdate, result: str, reason: str | None) -> None:
    audit.record(conn.settings, user=conn.user, ip=conn.ip, repo=repo, op="push", ref=u.ref,
                 old=u.old, new=u.new, result=result, reason=reason)

