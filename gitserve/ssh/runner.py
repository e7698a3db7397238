"""Glue between the SSH server and gitserve's state: who a key is, what a command does.

The admin state is read per lookup (adminrepo.current caches by the admin repo's tip), so a
push to gitolite-admin or `gitserve admin add-key` applies to the next connection.
"""

from __future__ import annotations

import logging

import paramiko

from typing import Any, Sequence

from gitserve import adminrepo
from gitserve.git.pushhooks import PushHook
from gitserve.settings import Settings

from . import session
from .cmd.base import CommandTable
from .auth import GitSSHServer, KeyLookup
from .server import CommandRunner, SSHServer

log = logging.getLogger(__name__)


def lookup_user(settings: Settings) -> KeyLookup:
    def lookup(blob: bytes) -> str | None:
        try:
            return adminrepo.current(settings).user_for_key(blob)
        except Exception:  # noqa: BLE001 - unreadable admin repo: nobody gets in, server stays up
            log.exception("cannot read keys from the admin repo")
            return None

    return lookup


def command_runner(settings: Settings, table: CommandTable,
                   hooks: Sequence[PushHook], metrics: Any = None) -> CommandRunner:
    """What an exec request runs: gitserve.ssh.session with this command table and hooks."""
    def run(chan: paramiko.Channel, command: str, user: str, iface: GitSSHServer) -> int:
        return session.run(settings, chan, command, user, iface.peer, iface.env, table, hooks,
                           metrics)

    return run


def make_server(settings: Settings, table: CommandTable,
                hooks: Sequence[PushHook], metrics: Any = None) -> SSHServer:
    """An SSHServer for SETTINGS serving TABLE's commands, running HOOKS on a push and
    counting into METRICS (gitserve.metrics.Metrics; None counts nothing)."""
    return SSHServer(settings, lookup_user(settings),
                     command_runner(settings, table, hooks, metrics), metrics=metrics)
