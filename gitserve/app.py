"""The composition root: from `Settings`, everything `gitserve serve` runs, wired in one place.

Nothing in gitserve, buildqueue or deploy registers itself on import. This module (with the
CLI, the top layer: it may import every package, and nothing imports it but the CLI and
tests) builds:

- the push hooks, in the order receive-pack runs them (`push_hooks`);
- the table of commands a user may run over ssh (`ssh_commands`);
- the background services, started in order before the SSH server and stopped in reverse
  (`services`);
- the SSH server itself, handed the table and the hooks (`App.ssh_server`);
- the HTTP face when `[http] listen` is set (`App.http_service`): smart HTTP git with the
  same hooks and access functions, the web UI, /metrics; it and the SSH server count into
  the one `Metrics` of the App.

What one `git push` does, in order (file -> file):

 1. gitserve/ssh/server.py     accept, admission limits, key auth (ssh/auth.py asks
                               gitserve/adminrepo/ who owns the key), one thread per channel
 2. gitserve/ssh/session.py    parse `git-receive-pack 'REPO'` (http/smart.py over HTTP), then
    gitserve/gitrequest/       check #1 (W on REPO, acl/engine); create a wild repo for a user
                               with C (repos.py); ReceivePack gets a RepoPushPolicy (check #2,
                               the push hooks below, the audit log) through its constructor
 3. gitserve/git/receive.py    advertise refs, read the ref commands
 4. gitserve/git/indexpack.py  receive the pack into a quarantine, fsck it (quarantine.py without git)
 5. gitserve/git/receive.py    per ref: refname sanity, the policy's check #2 (acl/engine +
                               acl/update, VREFs via acl/inspect_dulwich), admin-repo validation
                               (adminrepo/); the quarantine moves in; then the policy runs every
                               hook's before_update, in the order below:
                                 site hooks (GITSERVE_PLUGINS)      may reject the ref
                                 lfs/pushcheck.LockedPaths          a path locked by another
                                                                    user (LFS locks)
                                 buildqueue/pushhook.BuildHook      gate builds: enqueue, stream,
                                                                    reject unless it passed
 6. gitserve/git/receive.py    move refs (compare-and-swap), then the policy's updated: audit
                               (audit.py), HEAD of a new repo (repos.py), admin-repo compile
                               (adminrepo/); report-status to the client
 7. gitserve/git/receive.py    the policy's after_push: every hook's, in the same order:
                                 site hooks
                                 BuildHook         post-receive hooks (buildqueue/posthook.py),
                                                   sync/async builds (buildqueue/enqueue.py ->
                                                   Redis -> worker: buildqueue/worker.py, jobs.py,
                                                   runner.py; deploys: buildqueue/deploy_job.py ->
                                                   deploy/bluegreen.py)
                                 git/repack.RepackAfterPush  background repack + covering pack
                                 upkeep.UpkeepService        gc after N pushes
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from gitserve.errors import GitserveError
from gitserve.git.pushhooks import PushHook
from gitserve.git.repack import RepackAfterPush
from gitserve.lfs.pushcheck import LockedPaths
from gitserve.metrics import Metrics
from gitserve.mirror.syncer import MirrorHook, OriginOnly, MirrorSyncer
from gitserve.settings import Settings
from gitserve.ssh.cmd import base as ssh_commands
from gitserve.ssh.cmd import builtin
from gitserve.upkeep import UpkeepService

if TYPE_CHECKING:  # paramiko is imported only where a server is made: `gitserve shell`
    from gitserve.http.service import HttpService
    from gitserve.ssh.server import SSHServer  # runs one per connection and needs none

log = logging.getLogger(__name__)

# A site's own push hooks: GITSERVE_PLUGINS="pkg.module:factory,other.module" names
# factories called with the Settings that return a PushHook or a list of them (the
# factory name defaults to `push_hooks`). They run before gitserve's own hooks.
PLUGINS_ENV = "GITSERVE_PLUGINS"
DEFAULT_FACTORY = "push_hooks"


class Service(Protocol):
    """Something `gitserve serve` runs beside the SSH server."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class PluginError(GitserveError):
    """GITSERVE_PLUGINS names something that cannot be loaded."""


def site_hooks(settings: Settings, spec: str | None = None) -> list[PushHook]:
    """The push hooks GITSERVE_PLUGINS (or SPEC) names, built in the order given."""
    spec = os.environ.get(PLUGINS_ENV, "") if spec is None else spec
    found: list[PushHook] = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        module_name, _, attr = entry.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginError(f"{PLUGINS_ENV}: cannot import {module_name}: {exc}") from None
        factory: Callable[[Settings], PushHook | list[PushHook]] | None = getattr(
            module, attr or DEFAULT_FACTORY, None)
        if not callable(factory):
            raise PluginError(f"{PLUGINS_ENV}: {module_name} has no factory "
                              f"{attr or DEFAULT_FACTORY}(settings)")
        made = factory(settings)
        found.extend(made if isinstance(made, list) else [made])
    return found


def push_hooks(settings: Settings, upkeep: UpkeepService | None = None,
               syncer: MirrorSyncer | None = None) -> list[PushHook]:
    """What a push runs after the access checks, in order (see the module docstring)."""
    from buildqueue.pushhook import BuildHook

    # site hooks, LFS locks and builds run where a push was made, never again for the
    # master's mirror push to a slave (OriginOnly)
    hooks: list[PushHook] = [OriginOnly(h) for h in site_hooks(settings)]
    # a path someone else holds an LFS lock on stays as it is
    hooks.append(OriginOnly(LockedPaths()))
    hooks.append(OriginOnly(BuildHook()))  # gate builds; post-receive hooks; sync/async builds
    if syncer is not None:
        hooks.append(MirrorHook(settings, syncer))  # to the slaves; mirror.sync holds the ack
    hooks.append(RepackAfterPush())  # one pack per repo again, in the background
    if upkeep is not None:
        hooks.append(upkeep)  # gc after gc_after_pushes pushes
    return hooks


def ssh_commands_table(settings: Settings) -> dict[str, ssh_commands.Command]:
    """Every command a user can run over ssh (`ssh git@host NAME ...`), in one place."""
    from buildqueue.sshcommands import COMMAND as BUILDS
    from gitserve.secrets.sshcommand import COMMAND as SECRETS
    from deploy.sshcommands import COMMAND as DEPLOY
    from gitserve.http.sshcommands import LFS_AUTHENTICATE, LOGIN, TOKEN
    from gitserve.ssh.cmd import lfs, mirror

    return ssh_commands.table([
        *builtin.core_commands(),  # info, help, perms, desc, writable (Gitolite's)
        *builtin.enabled_commands(settings),  # D, create, fork, symbolic-ref if enabled
        BUILDS,  # builds list|show|log|cancel|retry
        DEPLOY,  # deploy status|rollback
        SECRETS,  # secrets list|set|remove (admins)
        TOKEN,  # token create|list|revoke: USER:TOKEN for git over http
        LOGIN,  # login: a one-time link for the web UI
        lfs.COMMAND,  # git-lfs-transfer: Git LFS over ssh (git-lfs 3), not in `help`
        LFS_AUTHENTICATE,  # git-lfs-authenticate: the HTTP LFS endpoint and a token
        *([mirror.COMMAND] if settings.server.hostname else []),  # mirror push|status
    ])


def services(settings: Settings, upkeep: UpkeepService | None = None,
             syncer: MirrorSyncer | None = None) -> list[Service]:
    """The background services, in start order: embedded Redis and local build workers
    (none with a redis.url), the embedded nginx (none for a system nginx), upkeep, and the
    notifier (always: it alone delivers webhooks and mail, with the server's secrets)."""
    from buildqueue.embedded import services as build_services
    from buildqueue.notify.service import services as notify_services
    from deploy.sitesctl import services as deploy_services

    from buildqueue.spool import SpoolService

    found: list[Service] = [*build_services(settings), *deploy_services(settings)]
    found.append(SpoolService(settings))  # builds held while Redis was down, queued when back
    if upkeep is not None:
        found.append(upkeep)
    found.extend(notify_services(settings))
    if syncer is not None:
        found.append(syncer)  # mirror pushes to the slaves, catch-up of slaves that were down
    return found


@dataclass
class App:
    """Everything one `gitserve serve` runs, built from its settings by `build`."""

    settings: Settings
    hooks: list[PushHook]
    commands: dict[str, ssh_commands.Command]
    services: list[Service] = field(default_factory=list)
    # one registry for the process: the SSH server and the HTTP face count into it
    metrics: Metrics = field(default_factory=Metrics)

    def ssh_server(self) -> SSHServer:
        """The SSH server, serving this app's command table and running its push hooks."""
        from gitserve.ssh import runner

        return runner.make_server(self.settings, self.commands, self.hooks, self.metrics)

    def http_service(self) -> HttpService | None:
        """The HTTP face (`[http] listen` / `--http`): smart HTTP git with the same push hooks,
        the web UI, /metrics; None when it is off. Binds its port here (a taken port fails
        before anything starts)."""
        if not self.settings.http.listen:
            return None
        from gitserve.http.service import HttpService

        return HttpService(self.settings, self.metrics, self.hooks)


def build(settings: Settings, hooks: Sequence[PushHook] | None = None) -> App:
    """Wire the server for SETTINGS (HOOKS replaces the push hooks, e.g. in tests)."""
    upkeep = UpkeepService(settings)
    metrics = Metrics()
    # mirroring ([server] hostname set): one queue of pushes to the slaves for the process
    syncer = MirrorSyncer(settings, metrics=metrics) if settings.server.hostname else None
    app = App(settings=settings, metrics=metrics,
              hooks=list(hooks) if hooks is not None else push_hooks(settings, upkeep, syncer),
              commands=ssh_commands_table(settings),
              services=services(settings, upkeep, syncer))
    # `gitserve shell` behind the system sshd hands its connections to this process
    from gitserve.ssh.handoff import HandoffService

    app.services.append(HandoffService(settings, app.commands, app.hooks, app.metrics))
    return app
