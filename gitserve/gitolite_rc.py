"""What a Gitolite site's ~/.gitolite.rc and its host decide, turned into gitserve settings.

The rc is Perl (`%RC = (...)`, with `$ENV{HOME}` and `$rc{GL_ADMIN_BASE}` interpolated), so it
is read the way Gitolite reads it: Perl evaluates it (Gitolite needs Perl, so a host that ran
Gitolite has it) and prints the result as JSON. Without Perl, a few regexes read the settings
that matter. What carries over:

- ENABLE'd commands gitserve has (D, create, fork, symbolic-ref), and those that are
  programs in LOCAL_CODE/commands (copied to HOME/commands) -> `[server] commands`;
- ENABLE'd refex-expr -> `[server] refex_expr = true`;
- GIT_CONFIG_KEYS -> `[server] git_config_keys` (gitserve still never writes keys that run a
  program or read a file: repoconf.py);
- LOCAL_CODE: the directory whose hooks/repo-specific/, VREF/ and commands/ the import copies;
- the hosting user (owner of the home) -> `[server] ssh_user`;
- the host's `init.defaultBranch` for that user (else git's old default, master) ->
  `[server] default_branch`, so `git push origin master` of a fresh clone keeps working.
Everything else the rc turns on is named in one line each (`notes`), never dropped silently.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the optional commands of gitserve/ssh/cmd/builtin.py (tests/unit/test_gitolite_import.py checks)
GITSERVE_COMMANDS = ("D", "create", "fork", "symbolic-ref")
# Gitolite's defaults that gitserve always has (commands) or does by itself (triggers)
ALWAYS_ON = {"help", "desc", "info", "perms", "writable", "ssh-authkeys", "git-config",
             "daemon", "gitweb", "repo-specific-hooks",
             "Mirroring"}  # gitserve/mirror/ reads the conf's mirror.* options
DEFAULT_ROLES = {"READERS", "WRITERS"}
PERL_TIMEOUT = 30.0

# evaluates the rc as Gitolite::Rc does (package, %rc defaults, `do`), prints %rc as JSON
_PERL = r"""
package Gitolite::Rc;
our (%rc, %RC, $GL_ADMINDIR);
$rc{GL_REPO_BASE}  = "$ENV{HOME}/repositories";
$rc{GL_ADMIN_BASE} = "$ENV{HOME}/.gitolite";
my $f = shift;
unless (do $f) { die(($@ || $! || "no value") . "\n"); }
@rc{ keys %RC } = values %RC;
require JSON::PP;
print JSON::PP->new->canonical->allow_unknown->allow_blessed->encode(\%rc);
"""


class RcError(ValueError):
    """The rc cannot be read (one line)."""


@dataclass
class SiteSettings:
    """What the import writes into gitserve.toml, and what it could not carry."""

    commands: list[str] = field(default_factory=list)
    refex_expr: bool = False
    git_config_keys: str = ""
    local_code: Path | None = None
    ssh_user: str | None = None
    default_branch: str = "master"
    # the hosting user's ~/.ssh/authorized_keys (Gitolite's block, sshd's forced commands)
    authorized_keys: Path | None = None
    notes: list[str] = field(default_factory=list)


def _perl_read(rc_path: Path, home: Path) -> dict[str, Any] | None:
    perl = shutil.which("perl")
    if perl is None:
        return None
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    try:
        proc = subprocess.run([perl, "-e", _PERL, str(rc_path)], cwd=home, env=env,
                              capture_output=True, text=True, timeout=PERL_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RcError(f"{rc_path}: perl could not read it: {exc}") from None
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["perl failed"])[0]
        if "JSON/PP.pm" in proc.stderr:
            return None  # a perl without its core modules: read the rc by hand
        raise RcError(f"{rc_path}: does not evaluate: {first}")
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise RcError(f"{rc_path}: perl printed no settings") from None
    return data if isinstance(data, dict) else None


def _regex_read(text: str, home: Path) -> dict[str, Any]:
    """The few settings that matter, when no Perl can evaluate the rc."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    rc: dict[str, Any] = {}

    def interpolate(value: str) -> str:
        value = value.replace("$ENV{HOME}", str(home))
        return value.replace("$rc{GL_ADMIN_BASE}", str(home / ".gitolite"))

    if m := re.search(r"GIT_CONFIG_KEYS\s*=>\s*(['\"])(.*?)\1", body):
        rc["GIT_CONFIG_KEYS"] = m.group(2)
    if m := re.search(r"LOCAL_CODE\s*=>\s*(['\"])(.*?)\1", body):
        rc["LOCAL_CODE"] = interpolate(m.group(2))
    if m := re.search(r"ROLES\s*=>\s*\{(.*?)\}", body, re.S):
        rc["ROLES"] = {r: 1 for r in re.findall(r"([A-Za-z_]+)\s*=>", m.group(1))}
    if m := re.search(r"ENABLE\s*=>\s*\[(.*?)\]", body, re.S):
        rc["ENABLE"] = re.findall(r"['\"]([^'\"]+)['\"]", m.group(1))
    return rc


def read_rc(rc_path: Path, home: Path) -> dict[str, Any]:
    """%rc as Gitolite sees it (empty when there is no rc). Raises RcError."""
    try:
        text = rc_path.read_text(errors="replace")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RcError(f"{rc_path}: {exc.strerror}") from None
    data = _perl_read(rc_path, home)
    return data if data is not None else _regex_read(text, home)


def host_default_branch(home: Path | None) -> str:
    """`init.defaultBranch` as the hosting user's git sees it (system + ~/.gitconfig), else
    master (what git, and so Gitolite, made before that setting existed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    if home is not None:
        env["HOME"] = str(home)
        env.pop("XDG_CONFIG_HOME", None)
    try:
        proc = subprocess.run(["git", "config", "--get", "init.defaultBranch"], cwd="/",
                              env=env, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "master"
    value = proc.stdout.strip()
    return value if proc.returncode == 0 and re.fullmatch(r"[A-Za-z0-9._/-]+", value) else "master"


def hosting_user(home: Path) -> str | None:
    try:
        return pwd.getpwuid(home.stat().st_uid).pw_name
    except (KeyError, OSError):
        return None


def carry(rc: dict[str, Any], rc_path: Path) -> SiteSettings:
    """The gitserve settings for RC, with a note for each thing that does not carry."""
    site = SiteSettings()
    enable = rc.get("ENABLE") or []
    names = [str(x) for x in enable] if isinstance(enable, list) else []
    keys = rc.get("GIT_CONFIG_KEYS")
    site.git_config_keys = keys.strip() if isinstance(keys, str) else ""
    local = rc.get("LOCAL_CODE")
    if isinstance(local, str) and local.strip():
        site.local_code = Path(local.strip())

    def site_command(name: str) -> bool:  # LOCAL_CODE/commands/NAME: copied to HOME/commands
        if site.local_code is None or "/" in name or name.startswith("."):
            return False
        path = site.local_code / "commands" / name
        return path.is_file() and os.access(path, os.X_OK)

    site.commands = [n for n in GITSERVE_COMMANDS if n in names]
    site.commands += [n for n in names if n not in ALWAYS_ON and n not in GITSERVE_COMMANDS
                      and site_command(n)]
    site.refex_expr = "refex-expr" in names
    extra = [n for n in names if n not in ALWAYS_ON and n not in site.commands
             and n != "refex-expr"]
    roles = rc.get("ROLES")
    if isinstance(roles, dict):
        more = sorted(set(roles) - DEFAULT_ROLES)
        if more:
            site.notes.append(f"{rc_path}: roles {', '.join(more)} are not supported (gitserve's "
                              "roles are READERS and WRITERS); gl-perms lines naming them grant "
                              "nothing")
    if extra:
        site.notes.append(f"{rc_path}: enabled Gitolite features gitserve does not have: "
                          f"{', '.join(extra)}")
    return site


def read_site(home: Path) -> SiteSettings:
    """Everything a hosting user's HOME decides (rc, owner, git's default branch)."""
    rc_path = home / ".gitolite.rc"
    site = carry(read_rc(rc_path, home), rc_path)
    site.ssh_user = hosting_user(home)
    site.default_branch = host_default_branch(home)
    keys_file = home / ".ssh" / "authorized_keys"
    if keys_file.is_file():
        site.authorized_keys = keys_file
    return site


def rc_warnings(rc_path: Path) -> list[str]:
    """What RC_PATH turns on that gitserve cannot carry over, one line each."""
    home = rc_path.parent
    return carry(read_rc(rc_path, home), rc_path).notes
