"""Which refs' builds get a secret (`gitserve admin secrets set REPO NAME --ref refs/heads/main`).

Without a scope a repo's secret reaches the builds of every ref, so anyone who may push any
branch (a `dev/` writer) could print it from their own build (issue 21, finding 6). A scope
lists the refs whose builds (and deploys) get it: `refs/heads/main` exactly, or a prefix
ending in `/` (`refs/tags/`). Scopes are names, not secrets: they live beside the secrets in
HOME/secrets/scopes.json ({repo: {name: [ref, ...]}}), whichever backend holds the values.
"""

from __future__ import annotations

import json
from pathlib import Path

from dulwich.refs import check_ref_format

from gitserve.fsutil import atomic_write, locked
from gitserve.settings import Settings

from .crypt import SecretError


def _file(settings: Settings) -> Path:
    return Path(settings.home) / "secrets" / "scopes.json"


def _load(settings: Settings) -> dict[str, dict[str, list[str]]]:
    try:
        data = json.loads(_file(settings).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SecretError(f"{_file(settings)}: unreadable ({exc})") from exc
    return data if isinstance(data, dict) else {}


def check_ref(ref: str) -> str:
    """A scope entry: a full ref name, or a prefix of them ending in '/'."""
    name = ref.rstrip("/") if ref.endswith("/") else ref
    if not name.startswith("refs/") or not check_ref_format(name.encode()):
        raise SecretError(f"--ref {ref!r}: give a full ref name (refs/heads/main) or a prefix "
                          "ending in / (refs/tags/)")
    return ref


def set_scope(settings: Settings, repo: str, name: str, refs: list[str]) -> None:
    """Scope REPO's secret NAME to REFS ([]: every ref)."""
    refs = sorted({check_ref(r) for r in refs})
    path = _file(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with locked(path.parent / ".scopes.lock"):
        data = _load(settings)
        mine = data.setdefault(repo, {})
        if refs:
            mine[name] = refs
        else:
            mine.pop(name, None)
        if not mine:
            data.pop(repo, None)
        atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n", mode=0o600)


def scopes(settings: Settings, repo: str) -> dict[str, list[str]]:
    return dict(_load(settings).get(repo, {}))


def allows(refs: list[str] | None, ref: str | None) -> bool:
    if not refs:
        return True
    if ref is None:
        return False
    return any(ref == r or (r.endswith("/") and ref.startswith(r)) for r in refs)


def for_ref(settings: Settings, repo: str, names: list[str], ref: str | None) -> list[str]:
    """Those of NAMES that the builds of REF get."""
    scoped = scopes(settings, repo)
    return [n for n in names if allows(scoped.get(n), ref)]


def suffix(refs: list[str] | None, sep: str = "\t") -> str:
    """What `secrets list|set` add for a scoped secret (nothing for one every ref gets)."""
    return f"{sep}only builds of {' '.join(refs)}" if refs else ""
