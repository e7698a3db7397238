"""`ssh git@HOST token create|list|revoke` and `ssh git@HOST login` (SPEC §9).

Both run over an SSH connection whose key was verified: that key is what vouches for the
token (HTTP basic auth `USER:TOKEN`) and for the one-time web login link.
"""

from __future__ import annotations

from datetime import datetime, timezone

from gitserve import adminrepo, audit
from gitserve.errors import CommandError
from gitserve.settings import Settings
from gitserve.ssh.cmd.base import Command, CommandContext

from .logins import LINK_SECONDS, LoginLinks
from .tokens import TokenStore

TOKEN_USAGE = """Usage:  ssh git@host token create NAME [--expires DAYS]
        ssh git@host token list
        ssh git@host token revoke NAME

Personal access tokens for git over HTTP(S): use them as the password, with your
user name, e.g. git clone https://USER@HOST/REPO.git (a credential helper keeps them).
A new token is shown once; only its SHA-256 is stored.
"""


def _when(ts: float) -> str:
    if not ts:
        return "never"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _not_builder(ctx: CommandContext) -> None:
    if ctx.user == adminrepo.BUILDER:
        raise CommandError("the build identity has no tokens or web logins")


def cmd_token(ctx: CommandContext, args: list[str]) -> int:
    _not_builder(ctx)
    store = TokenStore(ctx.settings.http_dir)
    if not args or args[0] in ("-h", "--help", "help"):
        ctx.out(TOKEN_USAGE)
        return 0 if args else 1
    verb, rest = args[0], args[1:]
    if verb == "create" and rest:
        name, days = rest[0], None
        if rest[1:]:
            if len(rest) != 3 or rest[1] != "--expires" or not rest[2].isdigit():
                raise CommandError("usage: token create NAME [--expires DAYS]")
            days = int(rest[2])
        token = store.create(ctx.user, name, days)
        audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, op="token create",
                     result="created", reason=name)
        ctx.out(f"{token}\n")
        info = next(t for t in store.list(ctx.user) if t.name == name)
        expires = f", expires {_when(info.expires)}" if info.expires else ""
        ctx.err(f"token {name} created for {ctx.user}{expires}; it is shown only this once\n")
        return 0
    if verb == "list" and not rest:
        for t in store.list(ctx.user):
            state = "expired" if t.expired else "active"
            ctx.out(f"{t.name}\t{state}\tcreated {_when(t.created)}\texpires {_when(t.expires)}\n")
        return 0
    if verb == "revoke" and len(rest) == 1:
        store.revoke(ctx.user, rest[0])
        audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, op="token revoke",
                     result="updated", reason=rest[0])
        ctx.out(f"token {rest[0]} revoked\n")
        return 0
    raise CommandError("Invalid syntax.  Please re-run with '-h' for detailed usage")


def base_url(settings: Settings) -> str:
    """Where users reach the HTTP face: `[http] public_url`, else http://LISTEN."""
    if settings.http.public_url:
        return str(settings.http.public_url).rstrip("/")
    host, _, port = settings.http.listen.rpartition(":")
    host = host or "127.0.0.1"
    if host in ("0.0.0.0", "::", "[::]"):
        host = settings.server.public_host or "localhost"
    return f"http://{host}:{port}"


def cmd_login(ctx: CommandContext, args: list[str]) -> int:
    _not_builder(ctx)
    if args:
        if args[0] in ("-h", "--help"):
            ctx.out("Usage:  ssh git@host login\n\nPrints a one-time link (valid 5 minutes) "
                    "that logs a browser in to the web UI as you.\n")
            return 0
        raise CommandError("login takes no arguments")
    if not ctx.settings.http.listen and not ctx.settings.http.public_url:
        raise CommandError("the web UI is not enabled on this server ([http] listen)")
    nonce = LoginLinks(ctx.settings.http_dir).issue(ctx.user)
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, op="login link", result="created")
    ctx.out(f"{base_url(ctx.settings)}/login/{nonce}\n")
    ctx.err(f"one-time link for {ctx.user}: valid {LINK_SECONDS // 60} minutes, works once\n")
    return 0


# gitserve.app puts these in the server's ssh command table
TOKEN = Command("token", cmd_token, "create, list, revoke tokens for git over HTTP")
LOGIN = Command("login", cmd_login, "print a one-time link that logs a browser in to the web UI")


def cmd_lfs_authenticate(ctx: CommandContext, args: list[str]) -> int:
    """`git-lfs-authenticate REPO upload|download` (git-lfs before 3, or when the pure SSH
    transfer is off): where the HTTP LFS endpoint is and a short-lived token for it, as
    JSON on stdout. The token is good for that repo and operation only (gitserve/lfs)."""
    import json

    from gitserve.lfs.repo import open_for
    from gitserve.lfs.store import LfsError
    from gitserve.lfs.tokens import Grant, LfsTokens
    from gitserve.ssh.cmd.lfs import lfs_target

    repo, operation = lfs_target(args)
    try:
        open_for(ctx.settings, ctx.rules, repo, ctx.user, operation)
    except LfsError as exc:
        raise CommandError(exc.message) from None
    if not ctx.settings.http.listen and not ctx.settings.http.public_url:
        raise CommandError("Git LFS over HTTP needs the HTTP face ([http] listen); "
                           "git-lfs 3 uses the ssh transfer (git-lfs-transfer) instead")
    tokens = LfsTokens(ctx.settings.lfs_dir)
    answer = {"href": f"{base_url(ctx.settings)}/{repo}.git/info/lfs",
              "header": tokens.header(Grant(ctx.user, repo, operation)),
              "expires_in": tokens.ttl}
    ctx.out(json.dumps(answer) + "\n")
    return 0


LFS_AUTHENTICATE = Command("git-lfs-authenticate", cmd_lfs_authenticate,
                           "Git LFS over HTTP: endpoint and a short-lived token", listed=False)
