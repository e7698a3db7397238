"""Which objects a fetch must send, computed the way git's revision walk does it.

dulwich's MissingObjectFinder first collects *every* ancestor of the client's haves and the
full tree of each common commit, then builds a ShaFile for every object it visits: on a
300k-object repository an incremental fetch of one commit costs seconds and a full clone a
minute. This walk instead
- paints commits down from wants (interesting) and haves (uninteresting) in commit-date
  order and stops as soon as only uninteresting commits are queued (git's `--not` walk),
  so an incremental fetch reads the new commits and not the whole history;
- reads raw object bytes and parses trees with dulwich's C `parse_tree`, never building
  ShaFile objects;
- skips any subtree the client already has (the trees of the boundary commits), and
  any object a caller says is covered already (a stored pack sent whole, see packcopy).
"""

from __future__ import annotations

import heapq
import stat
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dulwich.objects import parse_tree

COMMIT, TREE, BLOB, TAG = 1, 2, 3, 4
_WANT, _HAVE = 1, 2  # paint bits: reached from wants / reachable from haves


def parse_commit(raw: bytes) -> tuple[bytes, list[bytes], int]:
    """(tree, parents, committer time) of a raw commit, without building a Commit."""
    end = raw.find(b"\n\n")
    head = raw if end < 0 else raw[:end]
    tree = b""
    parents: list[bytes] = []
    when = 0
    for line in head.split(b"\n"):
        if line.startswith(b"tree "):
            tree = line[5:45]
        elif line.startswith(b"parent "):
            parents.append(line[7:47])
        elif line.startswith(b"committer "):
            try:
                when = int(line.rsplit(b" ", 2)[1])
            except (IndexError, ValueError):
                when = 0
    return tree, parents, when


def parse_tag(raw: bytes) -> tuple[bytes, int]:
    """(object, type number) a raw tag points at."""
    obj = b""
    kind = 0
    for line in raw.split(b"\n", 4)[:4]:
        if line.startswith(b"object "):
            obj = line[7:47]
        elif line.startswith(b"type "):
            kind = {b"commit": COMMIT, b"tree": TREE, b"blob": BLOB, b"tag": TAG}.get(line[5:], 0)
    return obj, kind


@dataclass
class WalkResult:
    objects: dict[bytes, int] = field(default_factory=dict)  # hex sha -> type number
    # tips whose whole closure the caller promised to send (validated against the wants)
    covered_ok: bool = False
    commits_read: int = 0
    trees_read: int = 0


class Walker:
    """One walk over an object store; GET_RAW(sha_hex) -> (type_num, bytes)."""

    def __init__(self, get_raw: Callable[[bytes], tuple[int, bytes]],
                 contains: Callable[[bytes], bool]) -> None:
        self.get_raw = get_raw
        self.contains = contains
        self._commits: dict[bytes, tuple[bytes, list[bytes], int]] = {}

    def commit(self, sha: bytes) -> tuple[bytes, list[bytes], int]:
        info = self._commits.get(sha)
        if info is None:
            kind, raw = self.get_raw(sha)
            if kind != COMMIT:
                raise ValueError(f"{sha.decode()} is not a commit")
            info = parse_commit(raw)
            self._commits[sha] = info
        return info

    def peel(self, sha: bytes, out: dict[bytes, int] | None) -> tuple[bytes, int]:
        """Follow tags from SHA to a non-tag object; tags passed are added to OUT."""
        kind, raw = self.get_raw(sha)
        while kind == TAG:
            if out is not None:
                out[sha] = TAG
            sha, _ = parse_tag(raw)
            kind, raw = self.get_raw(sha)
        if kind == COMMIT and sha not in self._commits:
            self._commits[sha] = parse_commit(raw)
        return sha, kind

    def walk(self, wants: Iterable[bytes], haves: Iterable[bytes], *,
             shallow: Collection[bytes] = (), covered_tips: Collection[bytes] = (),
             covered: Callable[[bytes], bool] | None = None,
             tagged: dict[bytes, bytes] | None = None) -> WalkResult:
        """Objects reachable from WANTS and not from HAVES.

        COVERED_TIPS/COVERED describe a stored pack the caller will send whole: it holds
        exactly the closure of COVERED_TIPS. It is only usable if every covered tip is
        reachable from the wants; `covered_ok` says whether that held (if not, the result
        was computed without it). TAGGED maps peeled sha -> annotated tag sha (include-tag).
        """
        result = WalkResult()
        send = result.objects
        want_commits: list[bytes] = []
        other_wants: list[tuple[bytes, int]] = []
        want_set = set(wants)
        for sha in want_set:
            target, kind = self.peel(sha, send)
            if kind == COMMIT:
                want_commits.append(target)
            else:
                other_wants.append((target, kind))
        have_commits: list[bytes] = []
        for sha in set(haves):
            if not self.contains(sha):
                continue  # a have we never had is simply not common
            target, kind = self.peel(sha, None)
            if kind == COMMIT:
                have_commits.append(target)
        cover_commits: list[bytes] = []
        use_cover = bool(covered_tips) and covered is not None and not shallow
        if use_cover:
            for tip in covered_tips:
                target, kind = self.peel(tip, None)
                if tip in want_set:
                    continue  # wanted directly: reachable by definition
                if kind != COMMIT:
                    use_cover = False  # a tag/tree tip not wanted: cannot prove reachability
                    break
                cover_commits.append(target)
        boundary = self._paint(want_commits, have_commits, cover_commits if use_cover else [],
                               set(shallow), result, covered if use_cover else None)
        if use_cover:
            flags = self._flags
            unproven = [c for c in cover_commits if not flags.get(c, 0) & _WANT]
            if not unproven or self._reaches(want_commits, unproven, set(shallow)):
                result.covered_ok = True
            else:
                # a covered tip is not an ancestor of the wants: redo without the pack
                result.objects = send = {k: v for k, v in send.items() if v == TAG}
                result.commits_read = 0
                boundary = self._paint(want_commits, have_commits, [], set(shallow), result, None)
        skip_known = covered if result.covered_ok else None
        seen: set[bytes] = set()
        for c in boundary:
            self._mark_tree(self.commit(c)[0], seen, result)
        for sha in list(send):
            if send[sha] == COMMIT:
                self._add_tree(self.commit(sha)[0], seen, send, skip_known, result)
        for sha, kind in other_wants:
            if kind == TREE:
                self._add_tree(sha, seen, send, skip_known, result)
            elif sha not in seen:
                send[sha] = kind
        if skip_known is not None:
            for sha in [s for s in send if skip_known(s)]:
                del send[sha]
        if tagged:
            for peeled, tag in tagged.items():
                if peeled in send and tag not in send and not (skip_known and skip_known(tag)):
                    send[tag] = TAG
        return result

    def _paint(self, wants: list[bytes], haves: list[bytes], cover: list[bytes],
               shallow: set[bytes], result: WalkResult,
               covered: Callable[[bytes], bool] | None) -> list[bytes]:
        """Paint commits; fills result.objects with interesting commits, returns the
        uninteresting commits next to them (whose trees the client has).

        With COVERED (a closed stored pack sent whole), a commit reached from the wants
        that the pack holds needs no walk: its whole closure is in the pack."""
        flags: dict[bytes, int] = {}
        self._flags = flags
        heap: list[tuple[int, int, bytes]] = []
        queued: set[bytes] = set()
        pending = 0  # queued commits not (yet) known to be uninteresting
        seq = 0

        late: list[bytes] = []

        def push(sha: bytes, bit: int) -> None:
            nonlocal seq, pending
            old = flags.get(sha, 0)
            if bit == _WANT and covered is not None and not old & _HAVE and covered(sha):
                bit = _WANT | _HAVE
            new = old | bit
            if new == old:
                return
            flags[sha] = new
            if sha in queued:
                if not old & _HAVE and new & _HAVE:
                    pending -= 1
                return
            if old:
                # already popped: flags recorded, not walked again; an uninteresting commit
                # reached from the wants late is still a boundary whose tree the client has
                if old & _HAVE and new & _WANT:
                    late.append(sha)
                return
            queued.add(sha)
            if not new & _HAVE:
                pending += 1
            seq += 1
            heapq.heappush(heap, (-self.commit(sha)[2], seq, sha))

        for c in haves:
            push(c, _HAVE)
        for c in cover:
            push(c, _HAVE)
        for c in wants:
            push(c, _WANT)
        boundary: list[bytes] = []
        send = result.objects
        while heap and pending > 0:
            _, _, sha = heapq.heappop(heap)
            queued.discard(sha)
            f = flags[sha]
            _tree, parents, _when = self.commit(sha)
            result.commits_read += 1
            if f & _HAVE:
                if f & _WANT:
                    boundary.append(sha)
                if sha not in shallow:  # a shallow client has nothing below its boundary
                    for p in parents:
                        push(p, _HAVE)
                continue
            pending -= 1
            send[sha] = COMMIT
            if sha in shallow:
                continue
            for p in parents:
                push(p, _WANT)
        # commits still queued that were reached from wants but are uninteresting
        for _, _, sha in heap:
            if flags[sha] & _WANT and flags[sha] & _HAVE:
                boundary.append(sha)
        boundary.extend(late)
        if covered is not None:
            return [b for b in boundary if not covered(b)]
        return boundary

    def _reaches(self, starts: list[bytes], targets: list[bytes], shallow: set[bytes],
                 slop: int = 86400) -> bool:
        """Is every target an ancestor of some start? Walks back in date order and gives
        up below the oldest target's date (minus SLOP for skewed clocks): a tip recorded
        with the stored pack (e.g. a hidden ref) is usually just behind a wanted branch."""
        todo = set(targets)
        floor = min(self.commit(t)[2] for t in targets) - slop
        heap = [(-self.commit(c)[2], c) for c in set(starts)]
        heapq.heapify(heap)
        seen = {c for _, c in heap}
        while heap and todo:
            neg_when, sha = heapq.heappop(heap)
            if -neg_when < floor:
                break
            todo.discard(sha)
            if sha in shallow:
                continue
            for p in self.commit(sha)[1]:
                if p not in seen:
                    seen.add(p)
                    heapq.heappush(heap, (-self.commit(p)[2], p))
        return not todo

    def _trees(self, tree: bytes, seen: set[bytes], result: WalkResult,
               stop: Callable[[bytes], bool] | None = None) -> Iterator[tuple[bytes, list[Any]]]:
        """TREE and every tree below it not in SEEN (each added to it), depth first, with its
        entries; a tree STOP says yes to is left out with all below it."""
        todo = [tree]
        while todo:
            sha = todo.pop()
            if sha in seen:
                continue
            seen.add(sha)
            if stop is not None and stop(sha):
                continue
            _, raw = self.get_raw(sha)
            result.trees_read += 1
            entries = parse_tree(raw, 20)
            yield sha, entries
            todo.extend(child for _name, mode, child in entries
                        if stat.S_ISDIR(mode) and child not in seen)

    def _mark_tree(self, tree: bytes, seen: set[bytes], result: WalkResult) -> None:
        """Everything under TREE is on the client already."""
        for _sha, entries in self._trees(tree, seen, result):
            seen.update(child for _name, mode, child in entries if not stat.S_ISDIR(mode))

    def _add_tree(self, tree: bytes, seen: set[bytes], send: dict[bytes, int],
                  known: Callable[[bytes], bool] | None, result: WalkResult) -> None:
        # a tree KNOWN says yes to is in the pack sent whole, and so is all below it
        for sha, entries in self._trees(tree, seen, result, known):
            send[sha] = TREE
            for _name, mode, child in entries:
                if (stat.S_ISLNK(mode) or stat.S_ISREG(mode)) and child not in seen:
                    seen.add(child)
                    if known is None or not known(child):
                        send[child] = BLOB
                # gitlinks (submodules) point into other repositories: never sent
