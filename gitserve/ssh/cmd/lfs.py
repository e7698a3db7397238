"""`git-lfs-transfer REPO upload|download`: git-lfs 3's pure SSH protocol (SPEC §11).

git-lfs runs it by itself over the same ssh connection settings as git (`ssh git@HOST
git-lfs-transfer /REPO upload`), so like git-upload-pack it is not listed in `help`. Check #1
is Gitolite's for the operation (R download, W upload) with Gitolite's FATAL line, before any
packet; the protocol itself is gitserve/lfs/transfer.py.
"""

from __future__ import annotations

import logging

from gitserve import repos
from gitserve.errors import CommandError
from gitserve.lfs.pktline import ProtocolError
from gitserve.lfs.repo import locks_for, open_for, store_for
from gitserve.lfs.store import LfsError
from gitserve.lfs.transfer import Transfer

from .base import Command, CommandContext

log = logging.getLogger(__name__)
USAGE = "usage: git-lfs-transfer REPO upload|download"


def lfs_target(args: list[str]) -> tuple[str, str]:
    """(repo, operation) from `REPO OPERATION`; one line when malformed."""
    if len(args) != 2:
        raise CommandError(USAGE)
    return repos.parse_repo_arg(args[0]), args[1]


def cmd_lfs_transfer(ctx: CommandContext, args: list[str]) -> int:
    repo, operation = lfs_target(args)
    try:
        access = open_for(ctx.settings, ctx.rules, repo, ctx.user, operation)
    except LfsError as exc:
        raise CommandError(exc.message) from None
    if ctx.write is None:
        raise CommandError("git-lfs-transfer needs a binary channel")
    transfer = Transfer(ctx.read, ctx.write, operation, access,
                        store_for(ctx.settings, repo), locks_for(ctx.settings, repo))
    try:
        transfer.serve()
    except (ProtocolError, EOFError) as exc:
        log.warning("git-lfs-transfer %s for %s ended: %s", repo, ctx.user, exc)
        if isinstance(exc, ProtocolError):  # the client broke the protocol: one line says how
            ctx.err(f"FATAL: git-lfs-transfer: {exc}\n")
        return 1
    return 0


COMMAND = Command("git-lfs-transfer", cmd_lfs_transfer, "Git LFS pure SSH transfer",
                  listed=False)
