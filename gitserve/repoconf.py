"""What the conf writes into the repositories, as Gitolite's post-compile triggers do.

- `config KEY = VALUE` lines (and `desc`/`owner`/`category`, sugar for `gitweb.*`) go into
  each repo's git config when KEY is allowed by `[server] git_config_keys` (space-separated
  regexes matched whole and case-insensitively, like Gitolite's GIT_CONFIG_KEYS; none by
  default). An empty value unsets the key. Keys that make git run a program or read another
  file (core.hooksPath, core.sshCommand, core.fsmonitor, *.command, include.path, ...) are
  never written, whatever the setting says: a conf pusher must not get code execution.
- `description` follows gitweb.description when that key is allowed.
- `git-daemon-export-ok` exists exactly when the user `daemon` may read the repo.
- HOME/projects.list lists `NAME.git` for every repo `gitweb` may read or that has a
  gitweb.* config, as gitweb/cgit read it.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

from dulwich.config import ConfigFile

from gitserve import repos
from gitserve.fsutil import atomic_write
from gitserve.settings import Settings

log = logging.getLogger(__name__)

EXPORT_OK = "git-daemon-export-ok"
PROJECTS_LIST = "projects.list"
OPTIONS_PREFIX = "gitolite-options."
# keys git reads as a program to run, a file to include, or a path to execute from
_DANGEROUS = re.compile(
    r"^(?:core\.(?:hookspath|sshcommand|fsmonitor|pager|editor|askpass|gitproxy|"
    r"alternaterefscommand|worktree|attributesfile|excludesfile)"
    r"|include\.path|includeif\..*|alias\..*|filter\..*|credential(?:\..*)?|pager\..*"
    r"|gpg\..*|sequence\.editor|uploadpack\.packobjectshook|receive\.procreceiverefs"
    r"|ssh\.variant|remote\..*|url\..*|protocol\..*|http\..*|sendemail\..*|browser\..*"
    r"|.*\.(?:command|cmd|program|driver|helper|textconv|process|clean|smudge|editor|path))$",
    re.IGNORECASE)


class ConfigKeyError(ValueError):
    """A `git_config_keys` setting that is not a list of valid regexes."""


def allowed_patterns(settings: Settings) -> list[re.Pattern[str]]:
    out = []
    for word in settings.server.git_config_keys.split():
        try:
            out.append(re.compile(word, re.IGNORECASE))
        except re.error as exc:
            raise ConfigKeyError(f"[server] git_config_keys: bad regex '{word}': {exc}") from None
    return out


def is_dangerous(key: str) -> bool:
    return bool(_DANGEROUS.match(key))


def key_allowed(key: str, patterns: list[re.Pattern[str]]) -> bool:
    return not is_dangerous(key) and any(p.fullmatch(key) for p in patterns)


def refused_keys(settings: Settings, rules: Any) -> list[str]:
    """Gitolite-worded warnings for config keys the conf sets but the server will not write."""
    patterns = allowed_patterns(settings)
    seen: dict[str, None] = {}
    for entries in rules.compiled.configs.values():
        for _seq, key, _value in entries:
            if not key.startswith(OPTIONS_PREFIX) and not key_allowed(key, patterns):
                seen.setdefault(key, None)
    return [f"git config '{k}' not allowed; "
            + ("it runs programs or reads files" if is_dangerous(k)
               else "check [server] git_config_keys in gitserve.toml") for k in seen]


def _split_key(key: str) -> tuple[tuple[bytes, ...], bytes] | None:
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        return None
    section = (parts[0].encode(),) if len(parts) == 2 else (
        parts[0].encode(), ".".join(parts[1:-1]).encode())
    return section, parts[-1].encode()


def write_configs(path: Path, configs: dict[str, str], patterns: list[re.Pattern[str]]) -> None:
    """Set (or, for an empty value, unset) each allowed key in PATH/config."""
    wanted = {k: v for k, v in configs.items()
              if not k.startswith(OPTIONS_PREFIX) and key_allowed(k, patterns)}
    if not wanted:
        return
    cfg_path = path / "config"
    cfg = ConfigFile.from_path(str(cfg_path))
    changed = False
    for key, value in wanted.items():
        split = _split_key(key)
        if split is None:
            continue
        section, name = split
        try:
            current = cfg.get(section, name)
        except KeyError:
            current = None
        if value == "":
            if current is not None:
                del cfg[section][name]
                changed = True
        elif current != value.encode():
            cfg.set(section, name, value.encode())
            changed = True
    if changed:
        buf = io.BytesIO()
        cfg.write_to_file(buf)
        atomic_write(cfg_path, buf.getvalue())


def apply(settings: Settings, rules: Any, name: str,
          patterns: list[re.Pattern[str]] | None = None) -> bool:
    """Bring repo NAME's config, description and export flag in line with the conf; returns
    whether gitweb should list it."""
    path = repos.path(settings, name)
    wild = repos.wild_info(settings, name)
    patterns = allowed_patterns(settings) if patterns is None else patterns
    configs = rules.configs(name, wild=wild)
    write_configs(path, configs, patterns)
    desc = configs.get("gitweb.description")
    if desc and key_allowed("gitweb.description", patterns):
        if repos.description(settings, name) != desc:
            atomic_write(path / "description", desc + "\n")
    export = path / EXPORT_OK
    if rules.check(name, "daemon", "R", "any", wild=wild, exists=True).allowed:
        if not export.exists():
            atomic_write(export, "")
    elif export.exists():
        export.unlink()
    if rules.options(name, wild=wild).get("deploy.site"):
        repos.pin_deploy_ref(settings, path)  # what deploys never follows a HEAD writers move
    else:
        repos.unpin_deploy_ref(path)
    gitweb_keys = any(k.startswith("gitweb.") and v and key_allowed(k, patterns)
                      for k, v in configs.items())
    return gitweb_keys or rules.check(name, "gitweb", "R", "any", wild=wild, exists=True).allowed


def apply_all(settings: Settings, rules: Any) -> None:
    """Every repo, then HOME/projects.list (after an admin push or `admin set-conf`)."""
    patterns = allowed_patterns(settings)
    listed = []
    for name in repos.list_names(settings):
        try:
            if apply(settings, rules, name, patterns):
                listed.append(f"{name}.git\n")
        except (OSError, ValueError, KeyError) as exc:
            log.warning("cannot update %s from the conf: %s", name, exc)
    atomic_write(settings.home / PROJECTS_LIST, "".join(sorted(listed)))


def apply_one(settings: Settings, rules: Any, name: str) -> None:
    """One repo just created or whose roles changed (Gitolite's POST_CREATE), projects.list too."""
    listed = apply(settings, rules, name)
    plf = settings.home / PROJECTS_LIST
    try:
        lines = plf.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        lines = []
    entry = f"{name}.git\n"
    new = [x for x in lines if x != entry] + ([entry] if listed else [])
    if new != lines:
        atomic_write(plf, "".join(sorted(new)))


def remove_listing(settings: Settings, name: str) -> None:
    """Drop a deleted repo from projects.list."""
    plf = settings.home / PROJECTS_LIST
    try:
        lines = plf.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return
    keep = [x for x in lines if x != f"{name}.git\n"]
    if keep != lines:
        atomic_write(plf, "".join(keep))
