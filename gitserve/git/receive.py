"""receive-pack (push) with Gitolite's update-hook semantics and push hooks.

One push, in order:
1. advertise refs (hidden refs left out), read the ref commands;
2. receive the pack into a quarantine, fsck it, check connectivity; a bad pack is refused
   whole (git's index-pack and rev-list when git is installed: indexpack.py; else dulwich);
3. per ref: refname sanity, then the policy's `check_ref` (check #2 + admin-repo validation)
   with the new objects still quarantined (visible to the inspector and VREF programs); then
   the quarantine moves in (only if some ref may still move), then the policy's
   `before_update` (the push hooks); a failing ref gets `ng REF REASON`, the others go on
   (with `atomic`, one failure fails all). Only a true no-op - old == new == the ref's value
   now - skips these: it is reported ok and triggers nothing (no audit, build or hook).
   Any other command, `X X REF` with REF elsewhere included, is checked like a real update
   (git never sends `X X`, so a hand-made one must not be a way around the rules);
4. move refs with compare-and-swap against the value the client sent as old, so racing
   pushes never lose an update silently and a stale `old` moves nothing;
5. the policy's `before_ack` (mirroring's mirror.sync) may turn the moved refs' `ok` into a
   reason; report-status, then the policy's `after_push` (hooks) streams `remote:` lines
   until it returns, then the final flush-pkt ends the conversation.

Everything beyond the git protocol (who may update what, what a push triggers, the limits)
is the `PushPolicy` given to the constructor, as dulwich's handlers take their backend;
gitserve.gitrequest builds the server's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from contextlib import nullcontext
from typing import Any, Collection, Protocol, Sequence

from dulwich.errors import GitProtocolError
from dulwich.objects import valid_hexsha
from dulwich.protocol import (
    CAPABILITY_ATOMIC,
    CAPABILITY_DELETE_REFS,
    CAPABILITY_OFS_DELTA,
    CAPABILITY_QUIET,
    CAPABILITY_REPORT_STATUS,
    CAPABILITY_SIDE_BAND_64K,
    CAPABILITIES_REF,
    extract_capabilities,
    format_ref_line,
    pkt_line,
    symref_capabilities,
)
from dulwich.refs import check_ref_format
from dulwich.repo import Repo
from dulwich.server import Backend, ReceivePackHandler

from gitserve._compat import dulwich as dulwich_compat

from . import pushopts
from .indexpack import GitQuarantine
from .packgen import choose_backend
from .pushhooks import ZERO_SHA, RefUpdate
from .quarantine import BadPack, Quarantine
from .repo import is_hidden
from .sideband import BAND_DATA, BAND_PROGRESS

log = logging.getLogger(__name__)

STALE = "failed to update ref (it moved: fetch first)"


@dataclass
class PushResult:
    """What happened to each ref, for the audit log and callers."""

    updates: list[RefUpdate]
    statuses: dict[str, str]  # ref -> "ok" or the rejection reason


@dataclass(frozen=True)
class PushLimits:
    """`[server]` push limits (0: none): the pack's size and any one blob's."""

    max_push_bytes: int = 0
    max_blob_bytes: int = 0


class PushPolicy(Protocol):
    """What receive-pack asks beyond the git protocol, in the order of a push. The server's
    (gitserve.gitrequest.RepoPushPolicy) is the access rules, the audit log, the admin repo
    and the push hooks app.py built."""

    @property
    def limits(self) -> PushLimits: ...

    def check_ref(self, repo: Repo, update: RefUpdate) -> str | None:
        """Check #2 and the server's own refusals, the new objects visible in REPO: a reason
        refuses the ref (asked before comparing `old` with the ref's value now)."""

    def before_update(self, update: RefUpdate, push_options: Sequence[str]) -> str | None:
        """The push hooks' gate, once the objects moved in: a reason refuses the ref."""

    def updated(self, updates: list[RefUpdate]) -> None:
        """The refs moved (before report-status): audit, HEAD of a new repo, admin compile."""

    def before_ack(self, updates: list[RefUpdate], push_options: Sequence[str]) -> str | None:
        """After the refs moved, before report-status (mirror.sync): a reason is reported
        for every moved ref instead of `ok` (the refs stay moved)."""

    def after_push(self, updates: list[RefUpdate], push_options: Sequence[str]) -> None:
        """After report-status: the hooks' post-receive work (builds, repack, gc)."""

    def progress(self, line: str) -> None:
        """One `remote: LINE` to the pusher."""


class ReceivePack(ReceivePackHandler):
    """Receive-pack whose update step is gitserve's, not a hook script's: POLICY decides
    and triggers (see PushPolicy); this class speaks the protocol, receives the pack
    (PACK_BACKEND: `[server] pack_backend`, "git" or "auto" picks git's index-pack when git
    is installed) and moves the refs."""

    show_hidden = False
    result: PushResult | None = None

    def capabilities(self) -> list[bytes]:
        return [CAPABILITY_REPORT_STATUS, CAPABILITY_DELETE_REFS, CAPABILITY_QUIET,
                CAPABILITY_ATOMIC, CAPABILITY_OFS_DELTA, CAPABILITY_SIDE_BAND_64K,
                pushopts.CAPABILITY]

    # --- conversation ---------------------------------------------------
    def __init__(self, backend: Backend, args: list[str], proto: Any, *, policy: PushPolicy,
                 pack_backend: str = "auto", stateless_rpc: bool = False,
                 advertise_refs: bool = False) -> None:
        super().__init__(backend, args, proto, stateless_rpc=stateless_rpc,
                         advertise_refs=advertise_refs)
        self.policy = policy
        self.limits = policy.limits  # the push policy's limits, for this whole push
        self.pack_backend = pack_backend
        self._moved_updates: list[RefUpdate] = []  # what after_push hooks are given
        self._noops: set[str] = set()  # refs whose command changes nothing (see _vet)
        self._push_options: list[str] = []  # `git push -o` values (push-options capability)

    def handle(self) -> None:
        # smart HTTP (stateless-rpc) asks for the advertisement and the push separately
        if self.advertise_refs or not self.stateless_rpc:
            self._advertise()
            if self.advertise_refs:
                return
        commands = self._read_commands()
        if commands is None:
            return
        if self.has_capability(pushopts.CAPABILITY):
            self._push_options = pushopts.read(self.proto)
        statuses = self._receive_and_update(commands)
        self._report(statuses)
        self._run_after_push()
        if self.has_capability(CAPABILITY_SIDE_BAND_64K):
            self.proto.write_pkt_line(None)

    def _advertise(self) -> None:
        refs = sorted(self.repo.get_refs().items())
        symrefs = sorted(self.repo.refs.get_symrefs().items())
        if not refs:
            refs = [(CAPABILITIES_REF, ZERO_SHA.encode())]
        caps = list(self.capabilities()) + symref_capabilities(symrefs)
        self.proto.write_pkt_line(format_ref_line(refs[0][0], refs[0][1], caps))
        for name, sha in refs[1:]:
            self.proto.write_pkt_line(format_ref_line(name, sha))
        self.proto.write_pkt_line(None)

    def _read_commands(self) -> list[RefUpdate] | None:
        line = self.proto.read_pkt_line()
        if line is None:
            return None  # the client had nothing to push
        try:
            line, caps = extract_capabilities(line)
        except ValueError:  # more than one NUL: not a command line git would send
            raise GitProtocolError(f"invalid ref update line {line!r}") from None
        self.set_client_capabilities(caps)
        commands: list[RefUpdate] = []
        while line:
            try:
                old, new, ref = line.rstrip(b"\n").split(b" ")
            except ValueError:
                raise GitProtocolError(f"invalid ref update line {line!r}") from None
            if not (valid_hexsha(old) and valid_hexsha(new)):
                raise GitProtocolError(f"invalid ref update line {line!r}")
            commands.append(RefUpdate(ref.decode("utf-8", "surrogateescape"),
                                      old.decode(), new.decode()))
            line = self.proto.read_pkt_line()
        return commands

    # --- update step ----------------------------------------------------
    def _receive_and_update(self, commands: list[RefUpdate]) -> list[tuple[str, str]]:
        wanted = [c for c in commands if not c.is_delete]
        quarantine = self._quarantine() if wanted else None
        missing: set[str] = set()
        if quarantine is not None:
            try:
                quarantine.receive(self.proto.read, getattr(self.proto, "recv", None),
                                   self._max_push_bytes(), self.limits.max_blob_bytes)
                quarantine.check(self.limits.max_blob_bytes)
                tips = quarantine.missing([c.new for c in wanted])
                missing = {c.ref for c in wanted if c.new in tips}
            except BadPack as exc:
                quarantine.close()
                return self._unpack_failed(commands, str(exc))
        reasons: dict[str, str] = {}
        try:
            # pack checked; now refname rules and check #2, the new objects still quarantined
            # (the inspector and VREF programs see them through quarantine.visible)
            with quarantine.visible(self.repo) if quarantine is not None else nullcontext():
                for cmd in commands:
                    reason = self._vet(cmd, missing)
                    if reason:
                        reasons[cmd.ref] = reason
            atomic = self.has_capability(CAPABILITY_ATOMIC)
            going = [] if atomic and reasons else [c for c in wanted if c.ref not in reasons]
            if quarantine is not None and going:
                quarantine.store.close()
                try:
                    quarantine.migrate()  # in before any ref moves, and before gate builds
                except OSError as exc:
                    return self._unpack_failed(commands, f"cannot store the pack: {exc}")
                # see the packs just moved in without waiting for a miss
                dulwich_compat.rescan_packs(self.repo.object_store)
        finally:
            if quarantine is not None:
                quarantine.close()
        if not (atomic and reasons):
            for cmd in commands:  # hooks (gate builds) see the objects in the repository
                if cmd.ref not in reasons and cmd.ref not in self._noops:
                    reason = self._before_update(cmd)
                    if reason:
                        reasons[cmd.ref] = reason
        if atomic and reasons:
            results = {c.ref: reasons.get(c.ref, "atomic push failed") for c in commands}
        else:
            results = self._move_refs([c for c in commands if c.ref not in reasons], atomic)
            results.update(reasons)
        done = self._moved(commands, results)
        self.result = PushResult(commands, results)
        if done:
            try:
                self.policy.updated(done)
            except Exception as exc:  # noqa: BLE001 - refs already moved; tell, don't crash
                log.exception("post-update step failed")
                self._progress(f"warning: {exc}")
        self._moved_updates = done
        unacked = self._before_ack(done)
        if unacked:  # the refs moved here, but the push is not acknowledged (mirror.sync)
            results.update({c.ref: unacked for c in done})
        return [("unpack", "ok")] + [(c.ref, results[c.ref]) for c in commands]

    def _before_ack(self, done: list[RefUpdate]) -> str | None:
        """The policy's before_ack (mirroring's mirror.sync): after the refs moved and before
        report-status; its reason is reported for every moved ref instead of `ok`."""
        return self.policy.before_ack(done, self._push_options) if done else None

    def _quarantine(self) -> Quarantine:
        """The git route (index-pack, git's checks) whenever git is there, else dulwich's."""
        objects = self.repo.object_store.path
        if choose_backend(self.pack_backend) == "git":
            progress = None
            if self.has_capability(CAPABILITY_SIDE_BAND_64K) and \
                    not self.has_capability(CAPABILITY_QUIET):
                def progress(data: bytes) -> None:
                    self.proto.write_sideband(BAND_PROGRESS, data)
            return GitQuarantine(objects, self.repo.object_format, progress=progress)
        return Quarantine(objects, self.repo.object_format)

    def _unpack_failed(self, commands: list[RefUpdate], why: str) -> list[tuple[str, str]]:
        self.result = PushResult(commands, {c.ref: "unpacker error" for c in commands})
        return [("unpack", why)] + [(c.ref, "unpacker error") for c in commands]

    def _vet(self, cmd: RefUpdate, missing: Collection[str]) -> str | None:
        """Refname rules and check #2 (the push hooks come later, see _before_update)."""
        ref = cmd.ref.encode("utf-8", "surrogateescape")
        if not ref.startswith(b"refs/") or not check_ref_format(ref):
            return "funny refname"
        if is_hidden(ref) and not self.show_hidden:
            return "refs/gitserve/ is reserved for the server"
        if cmd.ref in missing:
            return "missing necessary objects"
        target = self._symbolic(ref)
        if target is not None:  # a push never moves the ref a symref names (check #2 would ask
            # about the alias, the audit would name it, and the branch behind it would move)
            return f"refusing to update symbolic ref (it points at {target})"
        current = self._current(ref)
        if cmd.old == cmd.new == current:
            self._noops.add(cmd.ref)  # nothing to do; reported ok, triggers nothing
            return None
        reason = self.policy.check_ref(self.repo, cmd)
        if reason:
            return reason
        if cmd.old != current:
            return STALE
        return None

    def _before_update(self, cmd: RefUpdate) -> str | None:
        return self.policy.before_update(cmd, self._push_options)

    def _max_push_bytes(self) -> int | None:
        """The smaller of the policy's max_push_bytes and the repo's receive.maxInputSize."""
        limits = [n for n in (self.limits.max_push_bytes, dulwich_compat.receive_max_input_size(self)) if n]
        return min(limits) if limits else None

    def _symbolic(self, ref: bytes) -> str | None:
        """What REF names when it is a symbolic ref (`ref: refs/heads/x`), else None."""
        try:
            raw = self.repo.refs.read_ref(ref)
        except (KeyError, OSError, ValueError):
            return None
        if raw is not None and raw.startswith(b"ref: "):
            return raw[5:].strip().decode("utf-8", "surrogateescape")
        return None

    def _current(self, ref: bytes) -> str:
        """The ref's value now (ZERO_SHA when it does not exist)."""
        try:
            return self.repo.refs[ref].decode()
        except KeyError:
            return ZERO_SHA

    def _moved(self, commands: Sequence[RefUpdate], results: dict[str, str]) -> list[RefUpdate]:
        """The commands that really moved a ref: only these are audited, built and hooked."""
        return [c for c in commands if results.get(c.ref) == "ok" and c.ref not in self._noops]

    def _move_refs(self, commands: list[RefUpdate], atomic: bool) -> dict[str, str]:
        results: dict[str, str] = {}
        moved: list[RefUpdate] = []
        for cmd in commands:
            if cmd.ref in self._noops:
                results[cmd.ref] = "ok"
                continue
            ok = self._cas(cmd.ref, cmd.old, cmd.new)
            results[cmd.ref] = "ok" if ok else STALE
            if ok:
                moved.append(cmd)
            elif atomic:
                for undo in reversed(moved):  # put the ones already moved back
                    self._cas(undo.ref, undo.new, undo.old)
                return {c.ref: results[c.ref] if c.ref == cmd.ref else "atomic push failed"
                        for c in commands}
        return results

    def _cas(self, ref_name: str, old: str, new: str) -> bool:
        refs = self.repo.refs
        ref = ref_name.encode("utf-8", "surrogateescape")
        if self._symbolic(ref) is not None:  # dulwich's *_if_equals follow symrefs: never here
            return False
        try:
            if new == ZERO_SHA:
                if old == ZERO_SHA:  # deleting nothing: never a licence to delete anything
                    return False
                return bool(refs.remove_if_equals(ref, old.encode()))
            if old == ZERO_SHA:
                return bool(refs.add_if_new(ref, new.encode()))
            return bool(refs.set_if_equals(ref, old.encode(), new.encode()))
        except Exception:  # noqa: BLE001 - a held lock or I/O error: the ref did not move
            log.exception("ref update of %s failed", ref_name)
            return False

    # --- after the update -----------------------------------------------
    def _report(self, status: list[tuple[str, str]]) -> None:
        if not self.has_capability(CAPABILITY_REPORT_STATUS):
            return
        lines = bytearray()
        for name, msg in status:
            if name == "unpack":
                text = f"unpack {msg}\n"
            elif msg == "ok":
                text = f"ok {name}\n"
            else:
                text = f"ng {name} {msg}\n"
            lines += pkt_line(text.encode("utf-8", "surrogateescape"))
        lines += pkt_line(None)
        if self.has_capability(CAPABILITY_SIDE_BAND_64K):
            self.proto.write_sideband(BAND_DATA, bytes(lines))
            flush = getattr(self.proto, "flush", None)
            if flush:
                flush()
        else:
            self.proto.write(bytes(lines))

    def _run_after_push(self) -> None:
        if self.result is None:
            return
        done = self._moved_updates  # moved, whether or not acknowledged (mirror.sync)
        if done:
            self.policy.after_push(done, self._push_options)

    def _progress(self, line: str) -> None:
        self.policy.progress(line)
