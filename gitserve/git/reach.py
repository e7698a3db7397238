"""Which `want` object ids a client may ask for: git's allowReachableSHA1InWant, limited
to the refs this user sees.

A partial clone fetches missing blobs and trees later by id, so wants are not limited to
advertised ref tips. They are limited to objects reachable from the *visible* refs: an
object only reachable from a hidden ref (refs/gitserve/*) is refused exactly like an id
that does not exist, so its existence does not leak either.

The search is lazy: commits newest first, each commit's tree opened only while some wanted
tree/blob is still unfound, so the common lazy fetch (blobs of a tip's tree) reads one tree.
"""

from __future__ import annotations

import heapq
import stat
from collections.abc import Iterable

from dulwich.objects import parse_tree

from .packwalk import COMMIT, TAG, TREE, Walker, parse_tag


def unreachable(walker: Walker, tips: Iterable[bytes], wants: Iterable[bytes],
                first: Iterable[bytes] = ()) -> list[bytes]:
    """The WANTS that are not reachable from TIPS (ref values); [] when all are.

    FIRST (e.g. HEAD and the branches) is searched before the other tips: on a repository
    with tens of thousands of refs a lazy fetch is usually answered from those alone."""
    tip_set = set(tips)
    todo = {w for w in wants if w not in tip_set}
    if not todo:
        return []
    for w in list(todo):
        if not walker.contains(w):
            return sorted(todo)
    get_raw = walker.get_raw
    heap: list[tuple[int, bytes]] = []
    seen_commits: set[bytes] = set()
    seen_trees: set[bytes] = set()
    want_objects = {w for w in todo if get_raw(w)[0] != COMMIT}

    def visit_tree(root: bytes) -> None:
        stack = [root]
        while stack and want_objects:
            sha = stack.pop()
            if sha in seen_trees:
                continue
            seen_trees.add(sha)
            todo.discard(sha)
            want_objects.discard(sha)
            for _name, mode, child in parse_tree(get_raw(sha)[1], 20):
                if stat.S_ISDIR(mode):
                    stack.append(child)
                elif child in want_objects:
                    todo.discard(child)
                    want_objects.discard(child)

    def add_tip(sha: bytes) -> None:
        try:
            kind, raw = get_raw(sha)
            while kind == TAG:
                todo.discard(sha)
                want_objects.discard(sha)
                sha, _ = parse_tag(raw)
                kind, raw = get_raw(sha)
        except KeyError:
            return  # a ref whose object is missing reaches nothing
        todo.discard(sha)
        want_objects.discard(sha)
        if kind == COMMIT and sha not in seen_commits:
            seen_commits.add(sha)
            heapq.heappush(heap, (-walker.commit(sha)[2], sha))
        elif kind == TREE:
            visit_tree(sha)

    first_set = set(first) & tip_set
    for group in (first_set, tip_set - first_set):
        for tip in group:
            add_tip(tip)
        while heap and todo:
            _, sha = heapq.heappop(heap)
            todo.discard(sha)
            tree, parents, _when = walker.commit(sha)
            if want_objects:
                visit_tree(tree)
            for p in parents:
                if p not in seen_commits:
                    seen_commits.add(p)
                    heapq.heappush(heap, (-walker.commit(p)[2], p))
        if not todo:
            return []
    return sorted(todo)
