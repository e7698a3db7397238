"""gitserve's own `option` lines: one table of known names, each with its validator.

An option in one of gitserve's namespaces (`build.`, `deploy.`, `notify.`, `hook.`) turns
code execution on, says which ref goes live or where a site listens: a typo there must not
silently do something else (`build.mode = asnyc` running sync, a misspelt `build.enable`
leaving a repo unbuilt, `deploy.site = my site` failing every deploy). So `gitserve admin
check`, `set-conf` and a push to the admin repo refuse an unknown name or a bad value in
these namespaces with file:line, as they refuse conf syntax errors. Options outside them are
Gitolite's (deny-rules, writer-is-owner, mirror.*, ...) or a site's own; Gitolite accepts
any option name, and so does gitserve.

To add an option: add one row to KNOWN (exact name) or PREFIXED (a family such as
`hook.post-receive.X`), with a function that returns the reason a value is bad, or None.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dulwich.refs import check_ref_format

NAMESPACES = ("build.", "deploy.", "notify.", "hook.")

SITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+|\*)$")
CHECK_PATH_RE = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*$")
SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9.*~^_:-]+( [A-Za-z0-9.*~^_:-]+)*$")
# SPEC §7.1: a Procfile process type, and deploy.routes' PREFIX=TYPE words
PROCESS_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
ROUTE_RE = re.compile(r"^(/[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*)=([A-Za-z0-9][A-Za-z0-9_-]{0,31})$")
QUEUE_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
HOOK_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")
URL_RE = re.compile(r"^https?://[^\s/?#]+(/\S*)?$")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
BUILD_MODES = ("sync", "async", "gate")
MAX_TIMEOUT = 7 * 24 * 3600


@dataclass(frozen=True)
class Env:
    """What a validator may look at besides the value: HOME/hooks (None: not known, e.g.
    `admin check --conf FILE` without a server home; then hook names are checked for form only)."""

    hooks_dir: Path | None = None


Validator = Callable[[str, Env], "str | None"]


# --- value checks (each returns the reason a value is bad, or None) ------------------------

def _one_of(*choices: str) -> Validator:
    def check(value: str, env: Env) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"
    return check


def _boolean(value: str, env: Env) -> str | None:
    return None if value.lower() in TRUE + FALSE else "must be 1 or 0"


def _int_range(low: int, high: int) -> Validator:
    def check(value: str, env: Env) -> str | None:
        if not value.isdigit() or not low <= int(value) <= high:
            return f"must be a whole number from {low} to {high}"
        return None
    return check


def relative_path_problem(value: str) -> str | None:
    """A path inside the commit or the build output: relative, no '..', no odd characters."""
    p = PurePosixPath(value)
    if not value or p.is_absolute() or ".." in p.parts or any(c in value for c in "\x00\n\r"):
        return "must be a relative path without '..'"
    return None


def _relative_path(value: str, env: Env) -> str | None:
    return relative_path_problem(value)


def _refexes(value: str, env: Env) -> str | None:
    for refex in value.split():
        try:
            re.compile(refex)
        except re.error as exc:
            return f"{refex!r} is not a valid refex ({exc})"
    return None


def normalize_ref(value: str) -> str:
    """`main` means refs/heads/main, as refexes imply refs/heads/."""
    value = value.strip()
    return value if value.startswith("refs/") else "refs/heads/" + value


def _ref(value: str, env: Env) -> str | None:
    if " " in value or not check_ref_format(normalize_ref(value).encode()):
        return "must be one ref name, e.g. refs/heads/main"
    return None


def _regex(rx: re.Pattern[str], what: str) -> Validator:
    def check(value: str, env: Env) -> str | None:
        return None if rx.match(value) else what
    return check


EMAIL_RE = re.compile(r"^[^@\s,;<>\"']+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")
NOTIFY_EVENTS = ("push", "build", "deploy")


def _words(rx: re.Pattern[str], what: str) -> Validator:
    """One or more space-separated values, each matching RX (notify.webhook, notify.email)."""
    def check(value: str, env: Env) -> str | None:
        words = value.split()
        if not words:
            return f"needs at least one {what}"
        for word in words:
            if not rx.match(word):
                return f"{word!r} is not {what}"
        return None
    return check


def _events(value: str, env: Env) -> str | None:
    words = value.split()
    bad = [w for w in words if w not in NOTIFY_EVENTS]
    if not words or bad:
        return f"must be some of {' '.join(NOTIFY_EVENTS)}" + (f" (not {bad[0]!r})" if bad else "")
    return None


def listen_problem(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if sep and (not host or not HOST_RE.match(host)):
        return "bad host"
    if not port.isdigit() or not 0 < int(port) < 65536:
        return "need a port 1-65535 or HOST:PORT"
    return None


def _listen(value: str, env: Env) -> str | None:
    return listen_problem(value)


def hook_name_problem(name: str) -> str | None:
    if name.startswith("/") or ".." in name or not HOOK_NAME_RE.match(name):
        return f"invalid hook name {name!r} (no leading slash or '..')"
    return None


def _hooks(value: str, env: Env) -> str | None:
    for name in value.split():
        problem = hook_name_problem(name)
        if problem:
            return problem
        if env.hooks_dir is not None:
            path = env.hooks_dir / name
            if not path.is_file() or not os.access(path, os.X_OK):
                return f"no executable hook {name!r} in HOME/hooks"
    return None


def _size(value: str, env: Env) -> str | None:
    from .sandbox_limits import LimitError, parse_size

    try:
        parse_size(value)
    except LimitError as exc:
        return str(exc)
    return None


def _count(value: str, env: Env) -> str | None:
    from .sandbox_limits import LimitError, parse_count

    try:
        parse_count(value)
    except LimitError as exc:
        return str(exc)
    return None


KNOWN: dict[str, Validator] = {
    "build.enable": _boolean,
    "build.script": _relative_path,
    "build.refs": _refexes,
    "build.mode": _one_of(*BUILD_MODES),
    "build.timeout": _int_range(1, MAX_TIMEOUT),
    "build.queue": _regex(QUEUE_RE, "letters, digits and . _ : - only"),
    # issue 21: a repo narrows its builds' network and lowers the server's limits
    "build.network": _one_of("outbound", "none"),
    "build.memory": _size,
    "build.file-size": _size,
    "build.disk": _size,
    "build.log-bytes": _size,
    "build.pids": _count,
    "build.cpu-seconds": _count,
    "build.open-files": _count,
    "deploy.site": _regex(SITE_RE, "letters, digits and . _ - only, at most 64"),
    "deploy.ref": _ref,
    "deploy.dir": _relative_path,
    "deploy.check": _regex(CHECK_PATH_RE, "need a URL path starting with /"),
    "deploy.port": _listen,
    "deploy.preview-port": _listen,
    "deploy.post": _relative_path,
    "deploy.keep": _int_range(1, 1000),
    "deploy.server-name": _regex(SERVER_NAME_RE, "bad server name"),
    "deploy.web": _regex(PROCESS_TYPE_RE, "a Procfile process type (letters, digits, _ -)"),
    "deploy.routes": _words(ROUTE_RE, "/PREFIX=TYPE"),
    "deploy.drain": _int_range(0, 3600),
    "deploy.previews": _boolean,
    "deploy.tls": _regex(re.compile(r"^(acme|[A-Za-z0-9._-][A-Za-z0-9._/-]* [A-Za-z0-9._-][A-Za-z0-9._/-]*)$"),
                         "`acme` or `CERT.pem KEY.pem` (paths under HOME/tls)"),
    "deploy.tls-port": _listen,
    "deploy.previews-max": _int_range(1, 100),
    "notify.webhook": _words(URL_RE, "an http(s) URL"),
    "notify.email": _words(EMAIL_RE, "a mail address"),
    "notify.events": _events,
    "hook.post-receive": _hooks,
}
# families: any name that starts with the key (Gitolite's hook.post-receive.NAME = SCRIPT)
PREFIXED: dict[str, Validator] = {
    "hook.post-receive.": _hooks,
}


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
