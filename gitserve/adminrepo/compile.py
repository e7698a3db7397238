"""What follows a new admin tip: Gitolite's compile (create the repos the conf names, then
its post-compile triggers) and the authorized_keys block behind a system sshd.

Run after a push to master (the session's on_updated), after an admin command's commit and
by `gitserve init`; each step is idempotent, so running it twice changes nothing.
"""

from __future__ import annotations

import logging

from gitserve import authkeys, repoconf, repos
from gitserve.settings import Settings

from .state import current
from .tree import AdminError

log = logging.getLogger(__name__)


def compile(settings: Settings) -> list[str]:  # noqa: A001 - Gitolite's word for it
    """Create the repos the current conf names that do not exist yet; returns their names."""
    state = current(settings)
    created = []
    for name in state.rules.repo_names():
        try:
            if repos.exists(settings, name):
                continue
            repos.create(settings, name)
        except repos.RepoError:
            continue  # an invalid or racing name: the conf parser already warned
        created.append(name)
    # Gitolite's post-compile triggers: git configs, description, daemon export, projects.list
    try:
        repoconf.apply_all(settings, state.rules)
    except (OSError, repoconf.ConfigKeyError) as exc:
        log.warning("repo configs not updated: %s", exc)
    return created


def sync_authorized_keys(settings: Settings) -> str | None:
    """After an admin change: rewrite `[server] authorized_keys` (if set) for the keys now in
    force. The change itself already happened, so a failure here is reported, not raised;
    returns the one-line warning, or None."""
    if not settings.server.authorized_keys.strip():
        return None
    try:
        authkeys.sync(settings, lambda: current(settings))
    except (authkeys.AuthKeysError, AdminError) as exc:
        log.error("cannot update authorized_keys: %s", exc)
        return f"WARNING: authorized_keys not updated: {exc}"
    return None
