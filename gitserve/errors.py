"""The one root of gitserve's own errors, so the CLI can tell a user's mistake from a bug.

Every domain error (a bad conf, a bad key, a failed deploy, a build that cannot be found...)
derives from `GitserveError`; its str() is one line meant for a human. `gitserve.cli.main`
prints such an error as `gitserve: MESSAGE` and exits 1; anything else is a bug and keeps
its traceback. This module imports nothing, so every layer (acl and git included) may use it.
"""

from __future__ import annotations


class GitserveError(Exception):
    """A failure with a one-line message for the user (no traceback needed)."""


class CommandError(GitserveError):
    """A command (over ssh or on the CLI) refused its input: one line, exit 1.

    Over ssh the user sees it as `FATAL: MESSAGE`; on the CLI as `gitserve: MESSAGE`."""
