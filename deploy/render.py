"""nginx config text from jinja2 templates (package defaults, per-site overrides).

Paths come from HOME, which the admin chose; nginx has no way to escape `$` in most
directives, so a path nginx would misread is refused instead of quoted wrongly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2

from .errors import DeployError

_TEMPLATES = Path(__file__).parent / "templates"
_NGINX_UNSAFE = re.compile(r"[\"'\\${};\x00-\x1f]")


def nginx_quote(value: Any) -> str:
    text = str(value)
    if _NGINX_UNSAFE.search(text):
        raise DeployError("nginx config", f"path {text!r} holds characters nginx cannot quote")
    return f'"{text}"'


def _env(search_path: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(search_path)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["q"] = nginx_quote
    return env


def render_builtin(name: str, **context: Any) -> str:
    return _env(_TEMPLATES).get_template(name).render(**context)


def render_file(path: Path, **context: Any) -> str:
    """Render a user's template file; its errors name the file and line."""
    try:
        return _env(path.parent).get_template(path.name).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        raise DeployError("nginx config", f"{path}:{exc.lineno}: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise DeployError("nginx config", f"{path}: {exc.message}") from exc
