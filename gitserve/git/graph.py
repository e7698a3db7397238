"""One walk over the object graph, for everything that follows links from some roots
(shallow's rev-list emulation, upkeep's connectivity check): each node once, depth first."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TypeVar

N = TypeVar("N", bound=Hashable)


def reach(roots: Iterable[N], links: Callable[[N], Iterable[N]],
          seen: set[N] | None = None) -> Iterator[N]:
    """Every node reachable from ROOTS through LINKS, once each, depth first. SEEN (updated
    as the walk goes) holds nodes not to visit: pass one to stop the walk at them. LINKS of
    a node is asked once, after the node is yielded."""
    seen = set() if seen is None else seen
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        yield node
        stack.extend(n for n in links(node) if n not in seen)
