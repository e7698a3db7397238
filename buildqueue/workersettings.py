"""What a build worker knows about where it runs, read once from its environment.

A worker may run on the server host (serve's local workers: GITSERVE_HOME is the server's
home, so it fetches from the repositories directly and hides the home from build scripts)
or on a build host that only reaches Redis and the SSH port (no home; keys given by path).
Every worker-side module reads these through `WorkerSettings.from_env()`, so the variables
a worker honours are listed here and nowhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from gitserve.secrets.crypt import KEY_FILE_ENV

HOME_ENV = "GITSERVE_HOME"  # the server's home (local workers)
SECRETS_KEY_ENV = KEY_FILE_ENV  # key that decrypts build secrets
WORKER_KEY_ENV = "GITSERVE_WORKER_KEY"  # ssh key a remote worker fetches with
CACHE_ENV = "GITSERVE_BUILD_CACHE"  # where fetched objects are cached between builds
NO_LOCAL_ENV = "GITSERVE_NO_LOCAL_FETCH"  # "1": always fetch over SSH, as a remote host does
WORK_DIR_ENV = "GITSERVE_WORK_DIR"  # where build and deploy workspaces are made (0700)
# serve's notify workers: the SSH address serve listens on when `serve --listen` overrode
# gitserve.toml (a notification's `ssh ... builds log ID` line names it)
SERVER_LISTEN_ENV = "GITSERVE_SERVER_LISTEN"
# a build host's own gitserve.toml (only its [builds] is read): the floor of every job's
# sandbox policy there; a worker with a HOME reads HOME/gitserve.toml instead
SETTINGS_ENV = "GITSERVE_WORKER_SETTINGS"


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


@dataclass(frozen=True)
class WorkerSettings:
    home: Path | None = None
    secrets_key: Path | None = None  # as set; see secrets_key_file for the default
    worker_key: Path | None = None
    build_cache: Path | None = None
    no_local_fetch: bool = False
    work_dir: Path | None = None
    server_listen: str = ""
    settings_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if env is None else env
        return cls(home=_path(env.get(HOME_ENV)),
                   secrets_key=_path(env.get(SECRETS_KEY_ENV)),
                   worker_key=_path(env.get(WORKER_KEY_ENV)),
                   build_cache=_path(env.get(CACHE_ENV)),
                   no_local_fetch=env.get(NO_LOCAL_ENV) == "1",
                   work_dir=_path(env.get(WORK_DIR_ENV)),
                   server_listen=env.get(SERVER_LISTEN_ENV, ""),
                   settings_file=_path(env.get(SETTINGS_ENV)))

    def sandbox_floor(self) -> Any:
        """The sandbox policy this worker holds every job to (gitserve.sandbox.Policy.floored):
        `[builds]` of $GITSERVE_WORKER_SETTINGS, else of HOME/gitserve.toml, else the
        defaults. A job read from Redis never runs looser than this. Raises SettingsError
        (a GitserveError) for a file that does not load."""
        from gitserve.sandbox import Policy

        return Policy.from_settings(self.builds())

    def builds(self) -> Any:
        """This worker's own `[builds]` (see sandbox_floor)."""
        from gitserve import settings as settings_mod

        if self.settings_file is not None:
            return settings_mod.load_file(self.settings_file).builds
        if self.home is not None:
            return settings_mod.load(self.home).builds
        return settings_mod.BuildSettings()

    @property
    def secrets_key_file(self) -> Path | None:
        """$GITSERVE_SECRETS_KEY_FILE, else HOME/secrets.key, else None."""
        if self.secrets_key is not None:
            return self.secrets_key
        return self.home / "secrets.key" if self.home is not None else None

    @property
    def cache_root(self) -> Path:
        """$GITSERVE_BUILD_CACHE, else HOME/cache/builds, else ~/.cache/gitserve/builds."""
        if self.build_cache is not None:
            return self.build_cache
        if self.home is not None:
            return self.home / "cache" / "builds"
        return Path("~/.cache/gitserve/builds").expanduser()

    @property
    def work_root(self) -> Path:
        """$GITSERVE_WORK_DIR, else HOME/work, else ~/.cache/gitserve/work: the directory of
        every build's and deploy's workspace, which only the worker may list."""
        if self.work_dir is not None:
            return self.work_dir
        if self.home is not None:
            return self.home / "work"
        return Path("~/.cache/gitserve/work").expanduser()

    def sandbox_hidden(self) -> list[Path]:
        """What a build or deploy.post must not see besides the sandbox's defaults: the
        server home, every repo's build cache, the keys wherever they are configured."""
        found = [self.home, self.cache_root, self.secrets_key_file, self.ssh_key,
                 *self.server_credentials()]
        return [p for p in found if p is not None and p.exists()]

    def server_credentials(self) -> list[Path]:
        """Credential files the server's gitserve.toml names outside HOME (the Vault token or
        AppRole ids): whoever reads them reads every repo's secrets in Vault. Only a worker on
        the server host (HOME set) can know them; a build host has none."""
        if self.home is None:
            return []
        from gitserve import settings as settings_mod

        try:
            conf = settings_mod.load(self.home).secrets
        except settings_mod.SettingsError:
            return []
        return [Path(p).expanduser() for p in (conf.token_file, conf.role_id_file, conf.secret_id_file) if p]

    @property
    def ssh_key(self) -> Path | None:
        """$GITSERVE_WORKER_KEY, else HOME/worker_key if it exists, else None."""
        if self.worker_key is not None:
            return self.worker_key
        if self.home is not None and (self.home / "worker_key").exists():
            return self.home / "worker_key"
        return None
