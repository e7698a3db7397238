"""Shallow clone boundaries: what `deepen`, `deepen-since`, `deepen-not` and
`deepen-relative` mean, computed as git's upload-pack does (shallow.c), for v0 and v2.

The result says which commits become shallow on the client (`shallow X` lines), which of the
client's shallow commits stop being shallow (`unshallow X`), and what the pack walk needs:
the full set of boundary commits (whose parents are not sent), extra wants (the parents of
unshallowed commits) and extra haves (the unshallowed commits themselves, which the client
has). Both pack routes take those as they are (`--shallow` lines for git pack-objects, the
`shallow` set of packwalk).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from .errors import ShallowError
from .graph import reach

INFINITE_DEPTH = 0x7FFFFFFF  # what `git fetch --unshallow` sends as `deepen`

# (tree, parents, commit time) of a commit sha, as packwalk.Walker.commit returns it
CommitInfo = Callable[[bytes], "tuple[bytes, list[bytes], int]"]


@dataclass
class DeepenRequest:
    """The shallow-related lines of one fetch request."""

    client_shallow: set[bytes] = field(default_factory=set)  # `shallow X` lines
    depth: int = 0  # `deepen N`; 0 = not given
    relative: bool = False  # `deepen-relative`
    since: int | None = None  # `deepen-since T`
    not_refs: list[bytes] = field(default_factory=list)  # `deepen-not REF` (resolved shas)

    @property
    def deepens(self) -> bool:
        """Did the client ask for a new boundary (it then reads shallow/unshallow lines)?"""
        return bool(self.depth) or self.since is not None or bool(self.not_refs)

    @property
    def any(self) -> bool:
        return self.deepens or bool(self.client_shallow)


@dataclass
class ShallowResult:
    new_shallow: set[bytes] = field(default_factory=set)  # send `shallow X`
    unshallow: set[bytes] = field(default_factory=set)  # send `unshallow X`
    boundary: set[bytes] = field(default_factory=set)  # every shallow commit for the walk
    extra_wants: set[bytes] = field(default_factory=set)  # parents of unshallowed commits
    extra_haves: set[bytes] = field(default_factory=set)  # unshallowed commits


def compute(commit: CommitInfo, contains: Callable[[bytes], bool], wants: Iterable[bytes],
            req: DeepenRequest) -> ShallowResult:
    """The boundary for REQ over the commits reachable from WANTS (peeled commit shas)."""
    wants = list(dict.fromkeys(wants))
    client = {s for s in req.client_shallow if contains(s)}  # unknown shallows are ignored
    if req.depth and (req.since is not None or req.not_refs):
        raise ShallowError("--depth and --shallow-since (or --shallow-exclude) "
                           "cannot be used together")
    result = ShallowResult()
    not_shallow: set[bytes] = set()
    if req.depth >= INFINITE_DEPTH:
        not_shallow = set(client)  # --unshallow: every client boundary goes
    elif req.depth:
        if req.relative:
            shallow, not_shallow = _by_depth(commit, sorted(client), req.depth + 1)
        else:
            shallow, not_shallow = _by_depth(commit, wants, req.depth)
        result.new_shallow = shallow - client
    elif req.since is not None or req.not_refs:
        shallow, not_shallow = _by_rev_list(commit, wants, req.since, req.not_refs)
        result.new_shallow = shallow - client
    result.unshallow = client & not_shallow
    for sha in sorted(result.unshallow):
        result.extra_wants.update(commit(sha)[1])
    result.extra_haves = set(result.unshallow)
    result.boundary = result.new_shallow | client
    return result


def _by_depth(commit: CommitInfo, heads: list[bytes], depth: int) -> tuple[set[bytes], set[bytes]]:
    """Commits at distance DEPTH from HEADS (1 = the heads) and those nearer.

    Breadth first, so each commit gets its smallest distance: git's walk marks a commit both
    SHALLOW and NOT_SHALLOW when paths differ, and then treats it as not shallow."""
    dist: dict[bytes, int] = {}
    queue: deque[bytes] = deque()
    for h in heads:
        if h not in dist:
            dist[h] = 1
            queue.append(h)
    shallow: set[bytes] = set()
    not_shallow: set[bytes] = set()
    while queue:
        sha = queue.popleft()
        d = dist[sha]
        if d >= depth:
            shallow.add(sha)
            continue
        not_shallow.add(sha)
        for p in commit(sha)[1]:
            if p not in dist:
                dist[p] = d + 1
                queue.append(p)
    return shallow, not_shallow


def _by_rev_list(commit: CommitInfo, wants: list[bytes], since: int | None,
                 not_tips: list[bytes]) -> tuple[set[bytes], set[bytes]]:
    """`rev-list WANTS --max-age=SINCE --not NOT_TIPS`, then its border commits (those with a
    parent outside the list) become shallow, as git's get_shallow_commits_by_rev_list."""
    def parents(sha: bytes) -> list[bytes]:
        return commit(sha)[1]

    excluded = set(reach(not_tips, parents))
    listed = {sha for sha in reach(wants, parents, seen=set(excluded))
              if since is None or commit(sha)[2] >= since}
    if not listed:
        raise ShallowError("no commits selected for shallow requests")
    shallow = {c for c in listed if any(p not in listed for p in commit(c)[1])}
    return shallow, listed - shallow
