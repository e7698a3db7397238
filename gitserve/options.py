"""gitserve's own `option` lines, declared once each: name, default, value kind, scope.

An option in one of gitserve's namespaces (`build.`, `deploy.`, `notify.`, `hook.`) turns
code execution on, says which ref goes live or where a site listens: a typo there must not
silently do something else (`build.mode = asnyc` running sync, a misspelt `build.enable`
leaving a repo unbuilt, `deploy.site = my site` failing every deploy). So `gitserve admin
check`, `set-conf` and a push to the admin repo refuse an unknown name or a bad value in
these namespaces with file:line, as they refuse conf syntax errors. Options outside them are
Gitolite's (deny-rules, writer-is-owner, mirror.*, ...) or a site's own; Gitolite accepts
any option name, and so does gitserve.

The same declarations give the typed view the code reads: `RepoOptions.parse(options)`
turns the repo's option dict (acl's `rules.options(repo)`) into `BuildOptions`,
`NotifyOptions` and the site's deploy lines (`SiteOptions.parse`, strict). Each scope is a
frozen dataclass whose fields ARE the declarations:

    timeout: int = option(IntRange(1, MAX_TIMEOUT), 600)      # build.timeout

To add an option: add one such field to its scope (the option name is the scope's prefix
plus the field name with `_` as `-`, or `name=`); the validator of `admin check`, the
default and the typed value all come from that line.

What a bad value does where it is read (a conf written before a check existed): build and
notify options fall back (to the default, or to the good part of a list) and the push says
so where the option declares a `warn` line; deploy options are strict (`OptionError`: a
deploy refuses to guess where a site listens).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, ClassVar, Generic, TypeVar

from dulwich.refs import check_ref_format

from gitserve.errors import GitserveError

NAMESPACES = ("build.", "deploy.", "notify.", "hook.")

SITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+|\*)$")
CHECK_PATH_RE = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*$")
SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9.*~^_:-]+( [A-Za-z0-9.*~^_:-]+)*$")
# SPEC §7.1: a Procfile process type, and deploy.routes' PREFIX=TYPE words
PROCESS_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
ROUTE_RE = re.compile(r"^(/[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*)=([A-Za-z0-9][A-Za-z0-9_-]{0,31})$")
# SPEC §7.1 several web hosts: a deploy agent's name (`gitserve deploy-agent --name NAME`)
AGENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TLS_RE = re.compile(r"^(acme|[A-Za-z0-9._-][A-Za-z0-9._/-]* [A-Za-z0-9._-][A-Za-z0-9._/-]*)$")
QUEUE_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
HOOK_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")
URL_RE = re.compile(r"^https?://[^\s/?#]+(/\S*)?$")
EMAIL_RE = re.compile(r"^[^@\s,;<>\"']+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
BUILD_MODES = ("sync", "async", "gate")
NOTIFY_EVENTS = ("push", "build", "deploy")
MAX_TIMEOUT = 7 * 24 * 3600

T = TypeVar("T")


class OptionError(GitserveError):
    """A bad value of an option read strictly (deploy.*): one line, `option NAME = 'V': why`."""


class BadValue(ValueError):
    """Raised by a Kind's parse: the reason (e.g. "must be 1 or 0")."""


@dataclass(frozen=True)
class Env:
    """What a validator may look at besides the value: HOME/hooks (None: not known, e.g.
    `admin check --conf FILE` without a server home; then hook names are checked for form only)."""

    hooks_dir: Path | None = None


Validator = Callable[[str, Env], "str | None"]


# --- value kinds: parse a value (BadValue on a bad one), or salvage what a lenient reader uses

class Kind(Generic[T]):
    def parse(self, value: str) -> T:
        raise NotImplementedError

    def salvage(self, value: str) -> T | None:
        """What a lenient reader takes from a bad VALUE; None: the option's default."""
        return None

    def check(self, value: str, env: Env) -> str | None:
        try:
            self.parse(value)
        except BadValue as exc:
            return str(exc)
        return None


class Boolean(Kind[bool]):
    def parse(self, value: str) -> bool:
        if value.lower() in TRUE:
            return True
        if value.lower() in FALSE:
            return False
        raise BadValue("must be 1 or 0")


class Choice(Kind[str]):
    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def parse(self, value: str) -> str:
        if value not in self.choices:
            raise BadValue(f"must be one of {', '.join(self.choices)}")
        return value


class IntRange(Kind[int]):
    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def parse(self, value: str) -> int:
        if not value.isdigit() or not self.low <= int(value) <= self.high:
            raise BadValue(f"must be a whole number from {self.low} to {self.high}")
        return int(value)


def relative_path_problem(value: str) -> str | None:
    """A path inside the commit or the build output: relative, no '..', no odd characters."""
    p = PurePosixPath(value)
    if not value or p.is_absolute() or ".." in p.parts or any(c in value for c in "\x00\n\r"):
        return "must be a relative path without '..'"
    return None


class RelativePath(Kind[str]):
    """A path inside the commit or the build output. Leniently (build.script), a leading /
    is dropped and '..' kept: a commit never holds such a file, so nothing builds."""

    def __init__(self, lenient: bool = False) -> None:
        self.lenient = lenient

    def parse(self, value: str) -> str:
        problem = relative_path_problem(value)
        if problem:
            raise BadValue(problem)
        return str(PurePosixPath(value))

    def salvage(self, value: str) -> str | None:
        return posixpath.normpath(value.lstrip("/")) if self.lenient else None


class Refexes(Kind[tuple[str, ...]]):
    """Gitolite refexes (refs/heads/ implied); leniently a bad regex matches as a prefix."""

    def parse(self, value: str) -> tuple[str, ...]:
        for refex in value.split():
            try:
                re.compile(refex)
            except re.error as exc:
                raise BadValue(f"{refex!r} is not a valid refex ({exc})") from None
        return tuple(value.split())

    def salvage(self, value: str) -> tuple[str, ...]:
        return tuple(value.split())


class _SandboxLimit(Kind[int]):
    """A value gitserve.sandbox_limits parses with its function PARSER (its LimitError is
    this kind's BadValue), so a build option and `[builds]` read sizes alike."""

    parser = ""

    def parse(self, value: str) -> int:
        from . import sandbox_limits

        try:
            return int(getattr(sandbox_limits, self.parser)(value))
        except sandbox_limits.LimitError as exc:
            raise BadValue(str(exc)) from None


class Size(_SandboxLimit):
    """Bytes, with a K/M/G suffix (gitserve.sandbox_limits.parse_size)."""

    parser = "parse_size"


class Count(_SandboxLimit):
    """A whole number (gitserve.sandbox_limits.parse_count)."""

    parser = "parse_count"


def normalize_ref(value: str) -> str:
    """`main` means refs/heads/main, as refexes imply refs/heads/."""
    value = value.strip()
    return value if value.startswith("refs/") else "refs/heads/" + value


class Ref(Kind[str]):
    def parse(self, value: str) -> str:
        if " " in value or not check_ref_format(normalize_ref(value).encode()):
            raise BadValue("must be one ref name, e.g. refs/heads/main")
        return normalize_ref(value)

    def salvage(self, value: str) -> str:  # as read before checks existed: the name as given
        return normalize_ref(value)


class Pattern(Kind[str]):
    def __init__(self, rx: re.Pattern[str], what: str) -> None:
        self.rx, self.what = rx, what

    def parse(self, value: str) -> str:
        if not self.rx.match(value):
            raise BadValue(self.what)
        return value


@dataclass(frozen=True)
class Listen:
    """An nginx `listen` address; host "" means every address."""

    host: str
    port: int

    def nginx(self) -> str:
        return f"{self.host}:{self.port}" if self.host else str(self.port)

    def connect_host(self) -> str:
        """Where a local client reaches this listener (for the health check)."""
        if self.host in ("", "*", "0.0.0.0"):
            return "127.0.0.1"
        if self.host in ("[::]",):
            return "::1"
        return self.host.strip("[]")

    def url(self) -> str:
        host = self.connect_host()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


def listen_problem(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if sep and (not host or not HOST_RE.match(host)):
        return "bad host"
    if not port.isdigit() or not 0 < int(port) < 65536:
        return "need a port 1-65535 or HOST:PORT"
    return None


class ListenAddress(Kind[Listen]):
    """PORT or HOST:PORT; a bare PORT listens on DEFAULT_HOST."""

    def __init__(self, default_host: str) -> None:
        self.default_host = default_host

    def parse(self, value: str) -> Listen:
        problem = listen_problem(value)
        if problem:
            raise BadValue(problem)
        host, sep, port = value.rpartition(":")
        return Listen(host if sep else self.default_host, int(port))


class Words(Kind[tuple[str, ...]]):
    """One or more space-separated values, each matching RX; leniently the words that
    match KEEP (what delivery needs at least, e.g. an http(s) scheme, an @)."""

    def __init__(self, rx: re.Pattern[str], what: str, keep: re.Pattern[str]) -> None:
        self.rx, self.what, self.keep = rx, what, keep

    def parse(self, value: str) -> tuple[str, ...]:
        words = value.split()
        if not words:
            raise BadValue(f"needs at least one {self.what}")
        for word in words:
            if not self.rx.match(word):
                raise BadValue(f"{word!r} is not {self.what}")
        return tuple(words)

    def salvage(self, value: str) -> tuple[str, ...]:
        return tuple(w for w in value.split() if self.keep.search(w))


class Routes(Kind[tuple[tuple[str, str], ...]]):
    """deploy.routes: words /PREFIX=TYPE, each a path prefix proxied to a process type."""

    def parse(self, value: str) -> tuple[tuple[str, str], ...]:
        routes = []
        for word in value.split():
            m = ROUTE_RE.match(word)
            if not m:
                raise BadValue(f"{word!r} is not /PREFIX=TYPE")
            routes.append((m.group(1), m.group(2)))
        if not routes:
            raise BadValue("needs at least one /PREFIX=TYPE")
        return tuple(routes)


class HostPorts(Kind[tuple[tuple[str, str], ...]]):
    """deploy.host-ports: words NAME=PORT[/PREVIEW], a deploy host's own deploy.port (and
    deploy.preview-port) where it differs from the site's (hosts sharing one address)."""

    def parse(self, value: str) -> tuple[tuple[str, str], ...]:
        found = []
        for word in value.split():
            name, sep, ports = word.partition("=")
            if not sep or not AGENT_RE.match(name):
                raise BadValue(f"{word!r} is not HOST=PORT[/PREVIEW-PORT]")
            for part in ports.split("/", 1):
                problem = listen_problem(part)
                if problem:
                    raise BadValue(f"{word!r}: {problem}")
            found.append((name, ports))
        return tuple(found)


class Events(Kind[frozenset[str]]):
    """Some of push build deploy; leniently unknown words are ignored."""

    def parse(self, value: str) -> frozenset[str]:
        words = value.split()
        bad = [w for w in words if w not in NOTIFY_EVENTS]
        if not words or bad:
            raise BadValue(f"must be some of {' '.join(NOTIFY_EVENTS)}"
                           + (f" (not {bad[0]!r})" if bad else ""))
        return frozenset(words)

    def salvage(self, value: str) -> frozenset[str]:
        return frozenset(w for w in value.split() if w in NOTIFY_EVENTS)


def hook_name_problem(name: str) -> str | None:
    if name.startswith("/") or ".." in name or not HOOK_NAME_RE.match(name):
        return f"invalid hook name {name!r} (no leading slash or '..')"
    return None


class Hooks(Kind[tuple[str, ...]]):
    """Names of executables in HOME/hooks; each is checked again when it runs."""

    def parse(self, value: str) -> tuple[str, ...]:
        for name in value.split():
            problem = hook_name_problem(name)
            if problem:
                raise BadValue(problem)
        return tuple(value.split())

    def salvage(self, value: str) -> tuple[str, ...]:
        return tuple(value.split())

    def check(self, value: str, env: Env) -> str | None:
        problem = super().check(value, env)
        if problem or env.hooks_dir is None:
            return problem
        for name in value.split():
            path = env.hooks_dir / name
            if not path.is_file() or not os.access(path, os.X_OK):
                return f"no executable hook {name!r} in HOME/hooks"
        return None


# --- declarations ----------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """One option's declaration (a scope field's metadata)."""

    kind: Kind[Any]
    name: str = ""  # default: the scope's prefix + the field name with '-' for '_'
    # what a push says when a bad value falls back ({name}, {value}, {default}); None: silent
    warn: str | None = None
    # Gitolite's hook.post-receive.X: every option named NAME or NAME.X, words in conf order
    family: bool = False


def option(kind: Kind[Any], default: Any = dataclasses.MISSING, *, name: str = "",
           warn: str | None = None, family: bool = False) -> Any:
    """Declare one option as a scope field (no default: required when the scope is read)."""
    return field(default=default, metadata={"option": Spec(kind, name, warn, family)})


@dataclass(frozen=True)
class Problem:
    name: str
    value: str
    reason: str
    warning: str | None  # the line a push shows for it, if any

    def __str__(self) -> str:
        return f"option {self.name} = {self.value!r}: {self.reason}"


S = TypeVar("S", bound="Scope")


class Scope:
    """Base of the typed option groups; PREFIX is the namespace of their names."""

    PREFIX: ClassVar[str] = ""

    @classmethod
    def declared(cls) -> Iterator[tuple[str, dataclasses.Field[Any], Spec]]:
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            spec = f.metadata.get("option")
            if isinstance(spec, Spec):
                yield spec.name or cls.PREFIX + f.name.replace("_", "-"), f, spec

    @classmethod
    def read(cls: type[S], options: Mapping[str, str], *, strict: bool = False,
             defaults: Mapping[str, str] | None = None) -> tuple[S, list[Problem]]:
        """The typed view of OPTIONS and the problems found. Empty values count as unset.
        STRICT: the first problem raises OptionError. DEFAULTS: values standing in for unset
        options (a server setting such as [deploy] keep)."""
        values: dict[str, Any] = {}
        found: list[Problem] = []
        for name, f, spec in cls.declared():
            raw = _gather(options, name) if spec.family else (options.get(name) or "").strip()
            if not raw and defaults and name in defaults:
                raw = defaults[name].strip()
            if not raw:
                if f.default is dataclasses.MISSING:
                    raise OptionError(f"option {name} is required")
                values[f.name] = f.default
                continue
            try:
                values[f.name] = spec.kind.parse(raw)
            except BadValue as exc:
                fallback = spec.kind.salvage(raw)
                if fallback is None:
                    fallback = f.default
                warning = None
                if spec.warn:
                    warning = spec.warn.format(name=name, value=raw, default=f.default)
                problem = Problem(name, raw, str(exc), warning)
                if strict or fallback is dataclasses.MISSING:
                    raise OptionError(str(problem)) from None
                found.append(problem)
                values[f.name] = fallback
        return cls(**values), found

    @classmethod
    def lenient(cls: type[S], options: Mapping[str, str]) -> S:
        """The typed view, bad values replaced as `read` does (problems dropped)."""
        return cls.read(options)[0]

    @classmethod
    def parse(cls: type[S], options: Mapping[str, str],
              defaults: Mapping[str, str] | None = None) -> S:
        """Strictly: OptionError (one line) for a missing required or a bad value."""
        return cls.read(options, strict=True, defaults=defaults)[0]

    def lines(self) -> dict[str, str]:
        """The option lines that give this object again (canonical values)."""
        out: dict[str, str] = {}
        for name, f, spec in self.declared():
            value = getattr(self, f.name)
            if value is None or spec.family:
                continue
            out[name] = _unparse(value)
        return out


def _gather(options: Mapping[str, str], name: str) -> str:
    """A family's words: NAME and NAME.X options, in conf order."""
    return " ".join(v for k, v in options.items() if k == name or k.startswith(name + "."))


def _unparse(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Listen):
        return f"{value.host}:{value.port}" if value.host else str(value.port)
    if isinstance(value, frozenset):
        return " ".join(sorted(value))
    if isinstance(value, tuple):
        return " ".join("=".join(v) if isinstance(v, tuple) else str(v) for v in value)
    return str(value)


@dataclass(frozen=True, kw_only=True)
class BuildOptions(Scope):
    """What a push builds (SPEC §6); read leniently at push time."""

    PREFIX: ClassVar[str] = "build."
    # SPEC §6: nothing runs for a repo unless it says `option build.enable = 1`
    enable: bool = option(Boolean(), False)
    script: str = option(RelativePath(lenient=True), ".gitserve/build")
    refs: tuple[str, ...] = option(Refexes(), ("refs/heads/",))
    mode: str = option(Choice(*BUILD_MODES), "sync",
                       warn="gitserve: unknown {name} {value!r}, using {default}")
    timeout: int = option(IntRange(1, MAX_TIMEOUT), 600,
                          warn="gitserve: invalid {name} {value!r}, using {default}")
    queue: str = option(Pattern(QUEUE_RE, "letters, digits and . _ : - only"), "builds",
                        warn="gitserve: invalid {name} {value!r}, using {default}")
    # issue 21: a repo narrows its builds' network and lowers the server's [builds] limits
    # (gitserve.sandbox.Policy.for_repo applies them, warning about any it cannot lower)
    network: str | None = option(Choice("outbound", "none"), None)
    memory: int | None = option(Size(), None)
    file_size: int | None = option(Size(), None)
    disk: int | None = option(Size(), None)
    log_bytes: int | None = option(Size(), None)
    pids: int | None = option(Count(), None)
    cpu_seconds: int | None = option(Count(), None)
    open_files: int | None = option(Count(), None)
    # Gitolite's repo-specific hooks (HOME/hooks/NAME), run after a push when builds are on
    post_receive: tuple[str, ...] = option(Hooks(), (), name="hook.post-receive", family=True)


@dataclass(frozen=True, kw_only=True)
class SiteOptions(Scope):
    """Where and how a repo's builds go live (SPEC §7); read strictly by the deploy."""

    PREFIX: ClassVar[str] = "deploy."
    site: str = option(Pattern(SITE_RE, "letters, digits and . _ - only, at most 64"))
    # the only ref whose builds go live; None: the repo's default branch
    ref: str | None = option(Ref(), None)
    listen: Listen = option(ListenAddress(""), name="deploy.port")
    # the preview shows a release nobody has checked yet: local only unless a host is given
    preview: Listen = option(ListenAddress("127.0.0.1"), name="deploy.preview-port")
    check: str = option(Pattern(CHECK_PATH_RE, "need a URL path starting with /"), "/")
    dir: str = option(RelativePath(), "public")
    post: str | None = option(RelativePath(), None)
    keep: int = option(IntRange(1, 1000), 5)
    server_name: str = option(Pattern(SERVER_NAME_RE, "bad server name"), "")
    # SPEC §7.1: the process type nginx proxies / to, path prefixes for others, and how long
    # the old side's processes keep running after a switch
    web: str = option(Pattern(PROCESS_TYPE_RE, "a Procfile process type (letters, digits, _ -)"), "web")
    routes: tuple[tuple[str, str], ...] = option(Routes(), ())
    drain: int = option(IntRange(0, 3600), 10)
    # SPEC §7.1: a passed build of another branch goes live at BRANCH.SERVER_NAME
    # (deploy/previews.py), at most previews-max of them
    previews: bool = option(Boolean(), False)
    previews_max: int = option(IntRange(1, 100), 5)
    # site TLS (deploy/tls.py): `acme`, or CERT KEY under HOME/tls; tls-port defaults to 443
    # on deploy.port's host (deploy/options.py resolves it into tls_listen)
    tls: str = option(Pattern(TLS_RE, "`acme` or `CERT.pem KEY.pem` (paths under HOME/tls)"), "")
    tls_port: Listen | None = option(ListenAddress(""), None)
    # SPEC §7.1 several web hosts: the deploy agents serving the site (deploy/agents/); none:
    # this server's own nginx; host-ports: a host's own deploy.port[/deploy.preview-port]
    hosts: tuple[str, ...] = option(Words(AGENT_RE, "a deploy agent name", AGENT_RE), ())
    host_ports: tuple[tuple[str, str], ...] = option(HostPorts(), ())
    tls_listen: Listen | None = None  # not an option: the https listener the deploy uses


@dataclass(frozen=True, kw_only=True)
class NotifyOptions(Scope):
    """Who hears of pushes, builds and deploys; read leniently (bad targets are skipped)."""

    PREFIX: ClassVar[str] = "notify."
    webhook: tuple[str, ...] = option(
        Words(URL_RE, "an http(s) URL", re.compile(r"^https?://")), (),
        warn="gitserve: option {name} must be http(s) URLs; no notification to the others")
    email: tuple[str, ...] = option(Words(EMAIL_RE, "a mail address", re.compile("@")), ())
    events: frozenset[str] = option(Events(), frozenset(NOTIFY_EVENTS))

    def wants(self, event: str) -> bool:
        """Is EVENT sent anywhere? (push events go to webhooks only)"""
        if event not in self.events:
            return False
        return bool(self.webhook) or (bool(self.email) and event != "push")


SCOPES: tuple[type[Scope], ...] = (BuildOptions, SiteOptions, NotifyOptions)


@dataclass(frozen=True)
class RepoOptions:
    """Every gitserve option of one repo, typed; `raw` keeps all `option` lines (Gitolite's too)."""

    raw: Mapping[str, str]
    build: BuildOptions
    notify: NotifyOptions
    warnings: tuple[str, ...] = ()

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> RepoOptions:
        build, build_problems = BuildOptions.read(options)
        notify, notify_problems = NotifyOptions.read(options)
        warnings = tuple(p.warning for p in build_problems + notify_problems if p.warning)
        return cls(MappingProxyType(dict(options)), build, notify, warnings)

    @property
    def site_name(self) -> str:
        """`deploy.site` as written ("" when the repo deploys nothing)."""
        return (self.raw.get("deploy.site") or "").strip()

    def deploy_ref(self, default_branch: str | None) -> str | None:
        return deploy_ref(self.raw, default_branch)

    def deploy_lines(self) -> dict[str, str]:
        """The repo's deploy.* lines as written: a deploy judges them strictly where it runs."""
        return {k: v for k, v in self.raw.items() if k.startswith(SiteOptions.PREFIX)}


# --- admin check: every declared name, with its validator --------------------------------

def _validator(kind: Kind[Any]) -> Validator:
    def check(value: str, env: Env) -> str | None:
        return kind.check(value, env)
    return check


def _table() -> tuple[dict[str, Validator], dict[str, Validator]]:
    known: dict[str, Validator] = {}
    prefixed: dict[str, Validator] = {}
    for scope in SCOPES:
        for name, _f, spec in scope.declared():
            known[name] = _validator(spec.kind)
            if spec.family:
                prefixed[name + "."] = known[name]
    return known, prefixed


KNOWN, PREFIXED = _table()


def validator_for(name: str) -> Validator | None:
    if name in KNOWN:
        return KNOWN[name]
    for prefix, fn in PREFIXED.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return fn
    return None


def problem(name: str, value: str, env: Env) -> str | None:
    """Why `option NAME = VALUE` is refused, or None (also for options gitserve does not own)."""
    if not name.startswith(NAMESPACES):
        return None
    fn = validator_for(name)
    if fn is None:
        return f"unknown gitserve option {name!r}"
    reason = fn(value.strip(), env)
    return f"option {name} = {value.strip()!r}: {reason}" if reason else None


def problems(rules: Any, env: Env) -> list[str]:
    """Every bad gitserve option in RULES (a gitserve.acl.Rules), as "file:line: reason"."""
    prefix = "gitolite-options."
    found: list[tuple[int, str]] = []
    seen: set[int] = set()
    for entries in rules.compiled.configs.values():
        for seq, key, value in entries:
            if seq in seen or not key.startswith(prefix):
                continue
            seen.add(seq)
            reason = problem(key[len(prefix):], value, env)
            if reason:
                f, n = rules.compiled.origin.get(seq, ("?", 0))
                found.append((seq, f"{f}:{n}: {reason}"))
    return [msg for _seq, msg in sorted(found)]


def enabled(value: str | None) -> bool:
    return (value or "").strip().lower() in TRUE


def builds_enabled(options: Mapping[str, str]) -> bool:
    """SPEC §6: nothing runs for a repo unless it says `option build.enable = 1`."""
    return enabled(options.get("build.enable"))


def deploy_ref(options: Mapping[str, str], default_branch: str | None) -> str | None:
    """SPEC §7: the only ref whose builds go live - `deploy.ref`, else DEFAULT_BRANCH, which
    callers take from repos.deploy_default (the branch pinned when the site was configured),
    never from HEAD: a writer can move HEAD (issue 21, finding 3). None: nothing deploys."""
    value = (options.get("deploy.ref") or "").strip()
    return normalize_ref(value) if value else default_branch
