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
from gitserve.mirror import gate as mirror_gate
from gitserve.mirror import proxy as mirror_proxy
from gitserve.mirror.config import repo_mirror
from gitserve.mirror.lfsfill import download_store
from gitserve.mirror.transport import Transport

from .base import Command, CommandContext

log = logging.getLogger(__name__)
USAGE = "usage: git-lfs-transfer REPO upload|download"


def lfs_target(args: list[str]) -> tuple[str, str]:
    """(repo, operation) from `REPO OPERATION`; one line when malformed."""
    if len(args) != 2:
        raise CommandError(USAGE)
    return repos.parse_repo_arg(args[0]), args[1]


def mirror_master(ctx: CommandContext, repo: str, operation: str) -> str | None:
    """Gitolite's mirroring gate for an LFS session, as for git's own (gitserve/mirror/gate.py):
    downloads are served by every host that has the repo; an upload to a slave goes to the
    master when redirectOK allows it (its name is returned), else it is refused with
    Gitolite's message. The objects then live where the pushes are checked, and the master
    mirrors them to every slave."""
    hostname = ctx.settings.server.hostname
    if not hostname:
        return None
    mirror = repo_mirror(ctx.rules.options(repo, wild=repos.wild_info(ctx.settings, repo)))
    verdict = mirror_gate.check_user(hostname, repo, mirror, "W" if operation == "upload" else "R")
    return verdict.redirect_to


def cmd_lfs_transfer(ctx: CommandContext, args: list[str]) -> int:
    repo, operation = lfs_target(args)
    try:
        access = open_for(ctx.settings, ctx.rules, repo, ctx.user, operation)
    except LfsError as exc:
        raise CommandError(exc.message) from None
    if ctx.write is None:
        raise CommandError("git-lfs-transfer needs a binary channel")
    master = mirror_master(ctx, repo, operation)
    if master is not None:  # the user's git-lfs talks to the master through this slave
        return mirror_proxy.forward(Transport(ctx.settings), master, ctx.user, repo, ctx.read,
                                    ctx.write, lambda data: ctx.err(data.decode("utf-8", "replace")),
                                    lfs_upload=True)
    store = download_store(ctx.settings, ctx.rules, repo) if operation == "download" \
        else store_for(ctx.settings, repo)  # a copy fetches what it lacks from its master
    transfer = Transfer(ctx.read, ctx.write, operation, access, store,
                        locks_for(ctx.settings, repo))
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
