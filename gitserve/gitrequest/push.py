"""The policy one push runs under (gitserve.git.receive.PushPolicy): check #2 with VREFs,
the admin repo's validation and compile, the audit log, the push hooks app.py built, the
`[server]` limits, and the check #2 denials counted in the server's metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from dulwich.repo import Repo

from gitserve import adminrepo, audit, repoconf, repos
from gitserve.acl import WildInfo
from gitserve.acl.errors import AccessError
from gitserve.acl.inspect_dulwich import DulwichInspector
from gitserve.adminrepo import AdminState
from gitserve.git import vrefprog
from gitserve.git.pushhooks import PushContext, PushHook, RefUpdate
from gitserve.git.receive import PushLimits
from gitserve.metrics import NULL as NULL_METRICS
from gitserve.mirror import promotion as mirror_promotion
from gitserve.mirror.config import repo_mirror
from gitserve.mirror.syncer import MIRROR_SENDER
from gitserve.settings import Settings

log = logging.getLogger(__name__)

# the `ng` reason of a ref the access rules refused (git's own wording for a hook's refusal)
HOOK_DECLINED = "hook declined"


class RepoPushPolicy:
    """What a push by USER to repo NAME (at PATH) may do and what it triggers. PROGRESS writes
    one `remote:` line to the pusher; HOOKS run in order; METRICS counts check #2 denials
    under TRANSPORT; KEEPALIVE (HTTP) lets a long build keep a proxy from timing out.
    MIRROR_SENDER names the master when it pushes its state to this copy: no access rules
    then (it carries what the master allowed), only the admin repo's checks."""

    def __init__(self, settings: Settings, state: AdminState, user: str, ip: str, name: str,
                 path: Path, wild: WildInfo | None, *, progress: Callable[[str], None],
                 hooks: Sequence[PushHook] = (), metrics: Any = NULL_METRICS,
                 transport: str = "ssh", keepalive: Callable[[], None] | None = None,
                 mirror_sender: str = "") -> None:
        self.settings = settings
        self.state = state
        self.user = user
        self.ip = ip
        self.name = name
        self.path = path
        self.wild = wild
        self.hooks = tuple(hooks)
        self._progress = progress
        self._metrics = metrics
        self._transport = transport
        self._keepalive = keepalive
        self._mirror_sender = mirror_sender
        self._program = vrefprog.runner(settings.home, settings.repos_dir, name, path, user)
        self._inspector: DulwichInspector | None = None
        self._ctx: PushContext | None = None
        server = settings.server
        self._limits = PushLimits(max_push_bytes=max(0, server.max_push_bytes),  # < 0: none, as 0
                                  max_blob_bytes=max(0, server.max_blob_bytes))

    @property
    def limits(self) -> PushLimits:
        return self._limits

    def progress(self, line: str) -> None:
        self._progress(line)

    # --- per ref ------------------------------------------------------------------------
    def check_ref(self, repo: Repo, update: RefUpdate) -> str | None:
        reason = self._check_ref(repo, update)
        if reason:
            self._metrics.access_denied.labels(self._transport, "2").inc()
        return reason

    def _check_ref(self, repo: Repo, update: RefUpdate) -> str | None:
        """Check #2 (acl/update.py, VREFs through acl/inspect_dulwich.py and admin-installed
        programs), then the admin repo's own validation. A refusal prints Gitolite's lines."""
        if self._mirror_sender:
            return self._mirrored_ref(repo, update)
        if self._inspector is None or self._inspector.repo is not repo:
            self._inspector = DulwichInspector(repo)
        try:
            decision = self.state.rules.check_update(
                self.name, self.user, update.ref, update.old, update.new, self._inspector,
                wild=self.wild, program=self._program)
        except AccessError as exc:  # e.g. a ref name Gitolite refuses outright
            self.progress(f"FATAL: {exc}")
            self.progress(f"error: {HOOK_DECLINED} to update {update.ref}")
            self._audit(update, "rejected", str(exc))
            return HOOK_DECLINED
        except Exception as exc:  # noqa: BLE001 - refuse the ref, never crash the push
            log.exception("check #2 failed for %s %s", self.name, update.ref)
            return f"cannot check this update: {exc}"
        for note in decision.notes:
            self.progress(note)
        if not decision.allowed:
            # Gitolite's update hook dies with FATAL and git's receive-pack then says it
            # declined the ref: users and scripts match on both lines
            # split, not splitlines: a deny message ending in a newline (a VREF's line) shows
            # Gitolite's blank `remote:` line after it
            for i, line in enumerate(decision.message.split("\n")):
                self.progress(f"FATAL: {line}" if i == 0 else line)
            self.progress(f"error: {HOOK_DECLINED} to update {update.ref}")
            self._audit(update, "rejected", decision.message)
            log.warning("push to %s %s refused: %s", self.name, update.ref, decision.message)
            return HOOK_DECLINED
        if self.name == repos.ADMIN_REPO and update.ref == adminrepo.ADMIN_BRANCH:
            if update.is_delete:
                return "the admin repo's branch cannot be deleted"
            # REPO: it sees the push's quarantined objects
            reason = adminrepo.validate_commit(repo, update.new, self.settings.hooks_dir,
                                               self.settings.server.hostname,
                                               self.settings.server.refex_expr)
            if reason:
                self.progress(f"FATAL: {reason}")
                self._audit(update, "rejected", reason)
                return reason
        return None

    def _mirrored_ref(self, repo: Repo, update: RefUpdate) -> str | None:
        """The master's state comes as it is; an admin tree is still checked (and, from a
        promoted slave, must name it the master)."""
        if not (self.name == repos.ADMIN_REPO and update.ref == adminrepo.ADMIN_BRANCH):
            return None
        if update.is_delete:
            return "the admin repo's branch cannot be deleted"
        hostname = self.settings.server.hostname
        reason = mirror_promotion.check_admin_push(
            repo, update.new, hostname, self._mirror_sender,
            repo_mirror(self.state.rules.options(self.name)),
            master_answers=lambda name: mirror_promotion.master_answers(self.settings, name))
        reason = reason or adminrepo.validate_commit(repo, update.new, self.settings.hooks_dir,
                                                     hostname, self.settings.server.refex_expr)
        if reason:
            self.progress(f"FATAL: {reason}")
            self._audit(update, "rejected", reason)
        return reason

    def before_update(self, update: RefUpdate, push_options: Sequence[str]) -> str | None:
        ctx = self._context(push_options)
        for hook in self.hooks:
            try:
                reason = hook.before_update(ctx, update)
            except Exception as exc:  # noqa: BLE001
                log.exception("before_update hook failed")
                reason = f"hook error: {exc}"
            if reason:
                return reason
        return None

    # --- after the refs moved -------------------------------------------------------------
    def updated(self, updates: list[RefUpdate]) -> None:
        settings = self.settings
        for u in updates:
            self._audit(u, "updated", None)
            log.info("push %s %s %s..%s by %s", self.name, u.ref, u.old[:12], u.new[:12],
                     self.user)
        created = [u.ref for u in updates if u.is_create]
        if created:
            repos.head_after_push(self.path, created)
        if self.name != repos.ADMIN_REPO:
            return
        if any(u.ref == adminrepo.ADMIN_BRANCH for u in updates):
            made = adminrepo.compile(settings)
            # what Gitolite's compile says on the admin push: its WARNINGs, then git init's
            fresh = adminrepo.current(settings)
            refused = repoconf.refused_keys(settings, fresh.rules)
            for notice in fresh.rules.notices:  # a sugar script's own lines (refex-expr)
                self.progress(notice)
            for warning in [*fresh.rules.messages, *refused, *getattr(fresh, "warnings", ())]:
                self.progress(f"WARNING: {warning}")
            for repo_made in made:
                self.progress(repos.initialized_line(settings, repo_made))
            warning = adminrepo.sync_authorized_keys(settings)
            if warning:
                self.progress(warning)
        stored = [u.ref for u in updates if u.ref != adminrepo.ADMIN_BRANCH and not u.is_delete]
        if stored:
            self.progress(adminrepo.not_applied_note(stored))

    def before_ack(self, updates: list[RefUpdate], push_options: Sequence[str]) -> str | None:
        """Hooks with a `before_ack(ctx, updates)` (mirroring's mirror.sync), in order; the
        first reason is reported for every moved ref instead of `ok`."""
        ctx = self._context(push_options)
        for hook in self.hooks:
            gate = getattr(hook, "before_ack", None)
            if gate is None:
                continue
            try:
                reason = gate(ctx, updates)
            except Exception as exc:  # noqa: BLE001
                log.exception("before_ack hook failed")
                reason = f"hook error: {exc}"
            if reason:
                return str(reason)
        return None

    def after_push(self, updates: list[RefUpdate], push_options: Sequence[str]) -> None:
        ctx = self._context(push_options)
        for hook in self.hooks:
            try:
                hook.after_push(ctx, updates)
            except Exception as exc:  # noqa: BLE001 - the push itself already succeeded
                log.exception("after_push hook failed")
                self.progress(f"error: post-receive step failed: {exc}")

    # --- helpers --------------------------------------------------------------------------
    def _context(self, push_options: Sequence[str]) -> PushContext:
        """The one PushContext of this push, shared by every hook call (hooks keep state in
        its `extra`)."""
        if self._ctx is None:
            extra: dict[str, Any] = {}
            if self._mirror_sender:
                extra[MIRROR_SENDER] = self._mirror_sender
            if self._keepalive is not None:
                extra["keepalive"] = self._keepalive
            self._ctx = PushContext(
                settings=self.settings, repo_name=self.name, repo_path=self.path,
                user=self.user, options=self.state.rules.options(self.name, wild=self.wild),
                progress=self._progress, extra=extra, push_options=list(push_options))
        return self._ctx

    def _audit(self, u: RefUpdate, result: str, reason: str | None) -> None:
        audit.record(self.settings, user=self.user, ip=self.ip, repo=self.name, op="push",
                     ref=u.ref, old=u.old, new=u.new, result=result, reason=reason)
