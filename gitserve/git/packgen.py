"""Pack generation for upload-pack, behind one function so a faster generator can replace it.

The perf work (settings.server.pack_backend) plugs in here: `register_backend(name, fn)`
and `write_pack` picks the configured one, falling back to dulwich.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from dulwich.pack import write_pack_from_container

PackWriter = Callable[..., Any]
_BACKENDS: dict[str, PackWriter] = {}
_selected = "auto"


def register_backend(name: str, fn: PackWriter) -> None:
    """fn(write, repo, object_ids) writes a complete pack through `write` (no flush-pkt)."""
    _BACKENDS[name] = fn


def select(name: str) -> None:
    global _selected
    _selected = name


def _dulwich(write: Callable[[bytes], object], repo: Any, object_ids: Sequence[Any]) -> None:
    write_pack_from_container(write, repo.object_store, object_ids,
                              object_format=repo.object_format)


register_backend("dulwich", _dulwich)


def write_pack(write: Callable[[bytes], object], repo: Any, object_ids: Sequence[Any]) -> None:
    """Send a pack of OBJECT_IDS ((sha, hint) pairs, as dulwich's finder yields) to WRITE."""
    fn = _BACKENDS.get(_selected)
    if fn is None:
        fn = next((f for n, f in _BACKENDS.items() if n != "dulwich"), _dulwich) \
            if _selected == "auto" else _dulwich
    fn(write, repo, object_ids)
