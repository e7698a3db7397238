"""Partial clone filters (`--filter=...`), with git's meaning, for both pack routes.

Supported: `blob:none`, `blob:limit=N[kmg]`, `tree:DEPTH` and `combine:A+B` of those.
The git route hands the normalised spec to `git pack-objects --filter`; the dulwich route
removes filtered objects from the walk's result (`apply`). As in git, objects the client
named in a `want` are never filtered out (a lazy fetch of one blob must get it).

Depths follow git's list-objects-filter: a commit's root tree has depth 0, its entries
depth 1, and `tree:D` omits every tree and blob at depth >= D (so `tree:0` sends commits
only, `tree:1` the root trees without their blobs).
"""

from __future__ import annotations

import stat
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import unquote

from dulwich.objects import parse_tree

from .packwalk import BLOB, COMMIT, TREE
from .errors import FilterError

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


@dataclass(frozen=True)
class ObjectFilter:
    """One parsed filter; `parts` holds the members of a combine: filter."""

    kind: str  # "blob:none" | "blob:limit" | "tree" | "combine"
    value: int = 0
    parts: tuple[ObjectFilter, ...] = ()

    @property
    def spec(self) -> str:
        """The normalised spec git pack-objects accepts (sizes in bytes)."""
        if self.kind == "blob:none":
            return "blob:none"
        if self.kind == "blob:limit":
            return f"blob:limit={self.value}"
        if self.kind == "tree":
            return f"tree:{self.value}"
        return "combine:" + "+".join(p.spec for p in self.parts)

    def members(self) -> tuple[ObjectFilter, ...]:
        return self.parts if self.kind == "combine" else (self,)


def parse(text: str | bytes) -> ObjectFilter:
    """Parse a client's filter spec; FilterError for anything else (sparse:oid included)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    if text.startswith("combine:"):
        parts = tuple(parse(unquote(p)) for p in text[len("combine:"):].split("+"))
        if not parts or any(p.kind == "combine" for p in parts):
            raise FilterError(f"invalid filter-spec '{text}'")
        return ObjectFilter("combine", parts=parts)
    if text == "blob:none":
        return ObjectFilter("blob:none")
    if text.startswith("blob:limit="):
        return ObjectFilter("blob:limit", _size(text[len("blob:limit="):], text))
    if text.startswith("tree:"):
        raw = text[len("tree:"):]
        if not raw.isdigit():
            raise FilterError(f"expected 'tree:<depth>' in '{text}'")
        return ObjectFilter("tree", int(raw))
    if text.startswith("sparse:"):
        raise FilterError(f"filter '{text}' is not supported by this server")
    raise FilterError(f"invalid filter-spec '{text}'")


def _size(raw: str, text: str) -> int:
    raw = raw.lower()
    unit = raw[-1:] if raw[-1:] in ("k", "m", "g") else ""
    digits = raw[:-1] if unit else raw
    if not digits.isdigit():
        raise FilterError(f"invalid filter-spec '{text}'")
    return int(digits) * _UNITS[unit]


def apply(flt: ObjectFilter, objects: dict[bytes, int],
          get_raw: Callable[[bytes], tuple[int, bytes]],
          commit_tree: Callable[[bytes], bytes], explicit: Collection[bytes]) -> None:
    """Drop from OBJECTS (sha -> type, a walk's result) what FLT omits; EXPLICIT stays."""
    for part in flt.members():
        if part.kind == "blob:none":
            drop = [s for s, t in objects.items() if t == BLOB and s not in explicit]
        elif part.kind == "blob:limit":
            drop = [s for s, t in objects.items()
                    if t == BLOB and s not in explicit and len(get_raw(s)[1]) >= part.value]
        else:
            keep = _within_depth(part.value, objects, get_raw, commit_tree)
            drop = [s for s, t in objects.items()
                    if t in (TREE, BLOB) and s not in keep and s not in explicit]
        for sha in drop:
            del objects[sha]


def _within_depth(limit: int, objects: dict[bytes, int],
                  get_raw: Callable[[bytes], tuple[int, bytes]],
                  commit_tree: Callable[[bytes], bytes]) -> set[bytes]:
    """Trees and blobs at depth < LIMIT under the root trees of the commits sent."""
    keep: set[bytes] = set()
    if limit <= 0:
        return keep
    queue: deque[tuple[bytes, int]] = deque()
    for sha, kind in objects.items():
        if kind == COMMIT:
            queue.append((commit_tree(sha), 0))
    depth_of: dict[bytes, int] = {}
    while queue:
        tree, depth = queue.popleft()
        if depth_of.get(tree, limit) <= depth:
            continue
        depth_of[tree] = depth
        keep.add(tree)
        if depth + 1 >= limit:
            continue
        _, raw = get_raw(tree)
        for _name, mode, child in parse_tree(raw, 20):
            if stat.S_ISDIR(mode):
                queue.append((child, depth + 1))
            elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                keep.add(child)
    return keep
