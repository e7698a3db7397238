"""`ssh git@host deploy status|rollback|ps|logs|restart SITE` (SPEC §4, §7.1): the CLI's
commands with access rules (ps and logs: R on the site's repo; restart: W as rollback).

gitserve.app puts `COMMAND` in the server's ssh command table. A site is reachable by
whoever may read the repo whose pushes deploy it; rollback needs W on that repo's
deploy.ref (default: its default branch), the ref whose pushes go live. An unknown site
and a forbidden one get the same answer, as repos do.
"""

from __future__ import annotations

import json

from gitserve.options import deploy_ref
from gitserve.repos import deploy_default
from gitserve.ssh.cmd import base as commands
from gitserve.ssh.cmd.base import CommandContext, CommandError

from . import proclog
from .agents import record as agent_sites
from .bluegreen import restart, rollback
from .errors import DeployError
from .options import SITE_RE
from .status import format_status, site_repo, site_status

USAGE = """Usage:  ssh git@host deploy status SITE [--json]
        ssh git@host deploy rollback SITE [--to BUILD]
        ssh git@host deploy ps SITE [--json]
        ssh git@host deploy logs SITE [TYPE] [--follow]
        ssh git@host deploy restart SITE [TYPE]

status: live side, release, build, commit, when and by whom; the releases kept
rollback: switch live back to the previous release (or BUILD) in one step; needs W
          on the ref that deploys the site (option deploy.ref)
ps: the site's processes (Procfile): type, side, pid, port, uptime, restarts, state
logs: their output (the last 100 lines; --follow: then new lines as they come)
restart: the live release's processes started afresh on the idle side, checked and
         switched to, the old ones drained: no request fails; a TYPE that takes no
         HTTP traffic restarts in place; needs W as rollback
"""


def _repo_for(ctx: CommandContext, site: str, perm: str) -> str:
    hidden = CommandError(f"site {site} does not exist, or you are not authorised")
    if not SITE_RE.match(site):
        raise hidden
    repo = site_repo(ctx.settings, site) or agent_sites.site_repo(ctx.settings, site)
    if repo is None or not ctx.may(repo, "R"):
        raise hidden
    if perm != "R":
        # changing what is live needs the right to push what goes live: W on deploy.ref
        wild = commands.wild(ctx, repo)
        head = deploy_default(ctx.settings, ctx.settings.repo_path(repo))
        ref = deploy_ref(ctx.rules.options(repo, wild=wild), head) or head
        decision = ctx.rules.check(repo, ctx.user, perm, ref, wild=wild)
        if not decision.allowed:
            raise CommandError(decision.message)
    return repo


def cmd_deploy(ctx: CommandContext, args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        ctx.out(USAGE)
        return 0 if args else 1
    verb, rest = args[0], args[1:]
    as_json = "--json" in rest
    if verb in ("status", "ps") and as_json:
        rest = [w for w in rest if w != "--json"]
    if verb == "status" and len(rest) == 1:
        _repo_for(ctx, rest[0], "R")
        try:
            if agent_sites.exists(ctx.settings, rest[0]):  # deploy.hosts: each host's report
                from .agents.coordinator import Coordinator, format_status as format_hosts

                st = Coordinator.for_settings(ctx.settings).status(ctx.settings, rest[0])
                ctx.out((json.dumps(st, indent=1) if as_json else format_hosts(st)) + "\n")
                return 0
            st = site_status(ctx.settings, rest[0])
            ctx.out((json.dumps(st, indent=1) if as_json else format_status(st)) + "\n")
        except DeployError as exc:
            raise CommandError(exc.message) from None
        return 0
    if verb == "rollback" and len(rest) in (1, 3) and (len(rest) == 1 or rest[1] == "--to"):
        site, to = rest[0], (rest[2] if len(rest) == 3 else None)
        _repo_for(ctx, site, "W")
        try:  # rollback() audits the switch
            if agent_sites.exists(ctx.settings, site):  # deploy.hosts: all hosts or none
                from .agents.coordinator import Coordinator

                Coordinator.for_settings(ctx.settings).rollback(
                    ctx.settings, site, to=to, by=ctx.user, log=lambda line: ctx.out(line + "\n"))
                return 0
            rollback(ctx.settings, site, to=to, by=ctx.user, log=lambda line: ctx.out(line + "\n"))
        except DeployError as exc:
            raise CommandError(f"rollback {site}: {exc.message if exc.step == 'rollback' else exc}") from None
        return 0
    if verb == "ps" and len(rest) == 1:
        _repo_for(ctx, rest[0], "R")
        try:
            if agent_sites.exists(ctx.settings, rest[0]):  # deploy.hosts: each host's report
                from .agents.coordinator import Coordinator, format_ps

                st = Coordinator.for_settings(ctx.settings).status(ctx.settings, rest[0])
                ctx.out((json.dumps({h["host"]: h.get("ps") for h in st["hosts"]}, indent=1)
                         if as_json else format_ps(rest[0], st)) + "\n")
                return 0
            rows = proclog.ps_rows(ctx.settings, rest[0])
        except DeployError as exc:
            raise CommandError(exc.message) from None
        ctx.out((json.dumps(rows, indent=1) if as_json else proclog.format_ps(rest[0], rows)) + "\n")
        return 0
    if verb == "logs" and 1 <= len([w for w in rest if w not in ("--follow", "-f")]) <= 2:
        follow = any(w in ("--follow", "-f") for w in rest)
        words = [w for w in rest if w not in ("--follow", "-f")]
        site, kind = words[0], (words[1] if len(words) == 2 else None)
        _repo_for(ctx, site, "R")
        try:
            for line in proclog.log_lines(ctx.settings, site, kind):
                ctx.out(line + "\n")
            if follow:
                for line in proclog.follow(ctx.settings, site, kind, stop=lambda: False):
                    ctx.out(line + "\n")  # a closed channel raises here: the command ends
        except DeployError as exc:
            raise CommandError(exc.message) from None
        except (OSError, EOFError):
            return 0
        return 0
    if verb == "restart" and len(rest) in (1, 2):
        _repo_for(ctx, rest[0], "W")
        try:
            if agent_sites.exists(ctx.settings, rest[0]):  # deploy.hosts: all hosts or none
                if len(rest) == 2:
                    raise DeployError("restart", "a single process type is restarted on its web host "
                                      "(gitserve deploy restart SITE TYPE there)")
                from .agents.coordinator import Coordinator

                Coordinator.for_settings(ctx.settings).restart(
                    ctx.settings, rest[0], by=ctx.user, log=lambda line: ctx.out(line + "\n"))
                return 0
            restart(ctx.settings, rest[0], by=ctx.user, log=lambda line: ctx.out(line + "\n"),
                    kind=rest[1] if len(rest) == 2 else None)
        except DeployError as exc:
            raise CommandError(f"restart {rest[0]}: {exc.message if exc.step == 'restart' else exc}") from None
        return 0
    raise CommandError("Invalid syntax.  Please re-run with '-h' for detailed usage")


COMMAND = commands.Command("deploy", cmd_deploy,
                           "deploy status|rollback|ps|logs|restart SITE: blue-green deploys")
