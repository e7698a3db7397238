"""The seam between receiving a push and what a push triggers (builds, deploys, hooks).

receive-pack (gitserve.git) knows nothing about builds: gitserve.app builds the list of
`PushHook`s from the settings and the SSH session hands it to receive-pack. This keeps the
git protocol code testable without Redis and lets builds be tested without an SSH server.

Order for one push, as gitserve.git runs it:
1. pack received and checked; for each ref command, check #2 (access rules) runs;
2. for each ref that passed, every hook's `before_update` runs (gate mode builds here);
   a returned reason rejects that ref (`! [remote rejected] REF (REASON)`), others go on;
3. refs are moved (compare-and-swap); a hook with an optional `before_ack(ctx, updates)`
   (mirroring: `mirror.sync`) may then return a reason, reported for the moved refs
   instead of `ok` (the refs stay moved); report-status is sent to the client;
4. every hook's `after_push` runs with the updates that went through (sync builds stream
   here, async builds print their follow command); the client still reads sideband 2,
   so `ctx.progress` lines show as `remote: ...` until the hook returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from gitserve.settings import Settings

from gitserve.names import ZERO_SHA
from gitserve.options import RepoOptions



@dataclass(frozen=True)
class RefUpdate:
    ref: str  # full ref name, e.g. "refs/heads/main"
    old: str  # 40 hex; ZERO_SHA when the ref is created
    new: str  # 40 hex; ZERO_SHA when the ref is deleted

    @property
    def is_delete(self) -> bool:
        return self.new == ZERO_SHA

    @property
    def is_create(self) -> bool:
        return self.old == ZERO_SHA


@dataclass
class PushContext:
    settings: Settings
    repo_name: str  # Gitolite repo name, without .git
    repo_path: Path  # the bare repository on disk
    user: str  # the verified pusher
    options: dict[str, str]  # `option` lines that apply to this repo (last one wins)
    # Write one line to the pusher's terminal (sideband 2, shown as "remote: LINE").
    # Thread-safe; a no-op once the client is gone, so a dropped pusher never fails a build.
    progress: Callable[[str], None]
    extra: dict[str, Any] = field(default_factory=dict)
    # `git push -o X` values, in order (receive-pack's push-options capability)
    push_options: list[str] = field(default_factory=list)

    @cached_property
    def repo_options(self) -> RepoOptions:
        """OPTIONS typed (gitserve.options): what the push hooks read."""
        return RepoOptions.parse(self.options)


class PushHook(Protocol):
    def before_update(self, ctx: PushContext, update: RefUpdate) -> str | None:
        """Return a reason to reject this ref update (gate mode), or None to let it go on."""

    def after_push(self, ctx: PushContext, updates: list[RefUpdate]) -> None:
        """Runs after the refs moved and report-status was sent (post-receive)."""
