"""`ssh git@host secrets list|set|remove REPO [NAME]`: the admin's secrets commands over ssh.

gitserve.app puts `COMMAND` in the server's ssh command table.

Only admins may use it: users with write access to gitolite-admin (who could grant
themselves anything anyway). `set` reads the value from stdin, so it never shows in a
command line, the audit log or `ps`: `ssh git@host secrets set app TOKEN < token.txt`.
"""

from __future__ import annotations

from gitserve import audit
from gitserve.ssh.cmd import base as ssh_commands

from . import crypt as secrets
from . import scope as secretscope
from . import store as secretstore

USAGE = ("usage: secrets list REPO | set REPO NAME [--ref REF]... (value on stdin) | remove REPO NAME\n"
         "REPO @server holds the server's own secrets (the SMTP password)\n")
MAX_VALUE = 64 * 1024
ADMIN_REPO = "gitolite-admin"


def _read_all(ctx: ssh_commands.CommandContext) -> str:
    data = ctx.read_input(MAX_VALUE)
    if len(data) > MAX_VALUE:
        raise ssh_commands.CommandError(f"secret value larger than {MAX_VALUE // 1024} KiB")
    try:
        value = data.decode()
    except UnicodeDecodeError:
        raise ssh_commands.CommandError("secret value is not UTF-8 text") from None
    if value.endswith("\r\n"):
        return value[:-2]
    return value.removesuffix("\n")


def cmd_secrets(ctx: ssh_commands.CommandContext, args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        ctx.out(USAGE)
        return 0 if args else 1
    if not ctx.may(ADMIN_REPO, "W"):
        raise ssh_commands.CommandError("secrets: only admins (W on gitolite-admin) manage secrets")
    verb, rest = args[0], args[1:]
    refs: list[str] = []
    if verb == "set":  # set REPO NAME [--ref REF]...
        words = list(rest)
        rest = []
        while words:
            word = words.pop(0)
            if word == "--ref" and words:
                refs.append(words.pop(0))
            elif word.startswith("--ref="):
                refs.append(word.split("=", 1)[1])
            else:
                rest.append(word)
    shapes = {"list": 1, "set": 2, "remove": 2}
    if verb not in shapes or len(rest) != shapes[verb]:
        raise ssh_commands.CommandError(USAGE.splitlines()[0])
    repo = secretstore.scope_name(rest[0])
    store = secretstore.store_for(ctx.settings, repo)
    if verb == "list":
        scoped = secretscope.scopes(ctx.settings, repo)
        for name, ts in store.list(repo):
            ctx.out(f"{name}\t{secretstore.when(ts)}{secretscope.suffix(scoped.get(name))}\n")
        return 0
    name = rest[1]
    if verb == "set":
        secrets.validate_name(name)
        for ref in refs:
            secretscope.check_ref(ref)
        value = _read_all(ctx)
        secrets.check_value(value)
        store.set(repo, name, value)
        secretscope.set_scope(ctx.settings, repo, name, refs)
        ctx.out(f"secret {name} set for {repo}{secretscope.suffix(refs, ': ')}\n")
    else:
        store.remove(repo, name)
        secretscope.set_scope(ctx.settings, repo, name, [])
        ctx.out(f"secret {name} removed from {repo}\n")
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, op="secret", repo=repo, result="updated",
                 reason=f"{verb} {name}")
    return 0


COMMAND = ssh_commands.Command("secrets", cmd_secrets, "list, set, remove secrets (admins)")
