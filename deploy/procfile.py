"""A release's `Procfile` (Heroku/Dokku/piku format, SPEC §7.1): one `TYPE: COMMAND` a line.

Blank lines and `#` comments are skipped; a TYPE is letters, digits, `_` and `-`; a type
given twice, an empty command or a line without `:` is refused with its line number, so a
typo fails the deploy before anything starts instead of starting half the app.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import DeployError

NAME = "Procfile"
TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
MAX_TYPES = 16
MAX_BYTES = 64 * 1024


def parse(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind, sep, command = line.partition(":")
        kind, command = kind.strip(), command.strip()
        if not sep or not TYPE_RE.match(kind):
            raise DeployError("procfile", f"{NAME}:{number}: need `TYPE: COMMAND` (TYPE: letters, "
                              "digits, _ -)")
        if not command:
            raise DeployError("procfile", f"{NAME}:{number}: {kind} has no command")
        if kind in found:
            raise DeployError("procfile", f"{NAME}:{number}: process type {kind} given twice")
        found[kind] = command
    if len(found) > MAX_TYPES:
        raise DeployError("procfile", f"{NAME}: {len(found)} process types (at most {MAX_TYPES})")
    return found


def read(release_dir: Path) -> dict[str, str] | None:
    """The release's process types, or None for a static site (no Procfile)."""
    path = release_dir / NAME
    if path.is_symlink() or not path.exists():
        return None  # published releases hold no symlink out; a link here is not a Procfile
    if not path.is_file():
        raise DeployError("procfile", f"{NAME} is not a regular file")
    data = path.read_bytes()[:MAX_BYTES + 1]
    if len(data) > MAX_BYTES:
        raise DeployError("procfile", f"{NAME} is larger than {MAX_BYTES // 1024} KiB")
    return parse(data.decode("utf-8", errors="replace"))


def port_env_name(kind: str) -> str:
    """PORT_<TYPE> for deploy.post: upper case, `-` as `_` (a shell variable name)."""
    return "PORT_" + kind.upper().replace("-", "_")
