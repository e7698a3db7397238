"""One fetch request, independent of the protocol version that carried it.

v0 (upload.py) and v2 (v2.py) parse their own wire format into a `FetchArgs`; this module
checks the wants against what the user may see (reach.py), resolves the shallow boundary
(shallow.py) and turns the request into a `packgen.PackRequest`, so both versions send the
same objects and apply the same access rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dulwich.objects import valid_hexsha

from . import reach, shallow
from .filters import ObjectFilter
from .packgen import PackRequest
from .packwalk import COMMIT, Walker
from .shallow import DeepenRequest, ShallowResult
from .errors import FetchError


@dataclass
class FetchArgs:
    wants: list[bytes] = field(default_factory=list)
    haves: list[bytes] = field(default_factory=list)
    deepen: DeepenRequest = field(default_factory=DeepenRequest)
    deepen_not_names: list[bytes] = field(default_factory=list)  # resolved by `prepare`
    filter: ObjectFilter | None = None
    thin: bool = False
    ofs_delta: bool = False
    include_tag: bool = False
    no_progress: bool = False


def walker_for(repo: Any) -> Walker:
    store = repo.object_store
    return Walker(store.get_raw, lambda sha: sha in store)


def check_wants(walker: Walker, refs: Mapping[Any, bytes], wants: list[bytes]) -> None:
    """Every want must be reachable from a visible ref (refs holds only those)."""
    first = [sha for name, sha in refs.items()
             if name == b"HEAD" or name.startswith(b"refs/heads/")]
    bad = reach.unreachable(walker, refs.values(), wants, first)
    if bad:
        raise FetchError(f"upload-pack: not our ref {bad[0].decode()}")


def resolve_deepen_not(refs: Mapping[Any, bytes], names: list[bytes]) -> list[bytes]:
    """`deepen-not NAME`: a visible ref, by full name or git's short forms."""
    out = []
    for name in names:
        for candidate in (name, b"refs/" + name, b"refs/tags/" + name, b"refs/heads/" + name):
            if candidate in refs:
                out.append(refs[candidate])
                break
        else:
            raise FetchError(f"git upload-pack: ambiguous argument '{name.decode()}': "
                             "unknown revision or path not in the working tree.")
    return out


def peel_commits(walker: Walker, shas: list[bytes]) -> list[bytes]:
    out = []
    for sha in shas:
        target, kind = walker.peel(sha, None)
        if kind == COMMIT:
            out.append(target)
    return out


def tagged(repo: Any, refs: Mapping[Any, bytes]) -> dict[bytes, bytes]:
    """peeled sha -> tag sha for the visible tags (include-tag)."""
    out: dict[bytes, bytes] = {}
    for name, sha in refs.items():
        if not name.startswith(b"refs/tags/"):
            continue
        try:
            peeled = repo.get_peeled(name)
        except KeyError:
            continue
        if peeled is not None and peeled != sha:
            out[peeled] = sha
    return out


def prepare(repo: Any, refs: Mapping[Any, bytes], args: FetchArgs,
            walker: Walker | None = None) -> ShallowResult | None:
    """Check ARGS' wants and compute the shallow boundary (None if no shallow lines)."""
    walker = walker or walker_for(repo)
    check_wants(walker, refs, args.wants)
    if args.deepen_not_names:
        args.deepen.not_refs = peel_commits(walker, resolve_deepen_not(refs,
                                                                        args.deepen_not_names))
    if not args.deepen.any:
        return None
    try:
        return shallow.compute(walker.commit, walker.contains, peel_commits(walker, args.wants),
                               args.deepen)
    except shallow.ShallowError as exc:
        raise FetchError(str(exc)) from None


def pack_request(repo: Any, refs: Mapping[Any, bytes], args: FetchArgs, haves: list[bytes],
                 boundary: ShallowResult | None) -> PackRequest:
    wants = list(args.wants)
    haves = list(haves)
    shallow_set: set[bytes] = set()
    if boundary is not None:
        shallow_set = set(boundary.boundary)
        wants += sorted(boundary.extra_wants - set(wants))
        haves += sorted(boundary.extra_haves - set(haves))
    return PackRequest(
        wants=wants, haves=haves, shallow=shallow_set, thin=args.thin, ofs_delta=args.ofs_delta,
        include_tag=args.include_tag,
        tagged=tagged(repo, refs) if args.include_tag else {},
        filter=args.filter)


def sha_arg(value: bytes, line: bytes, bad: Callable[[bytes], Exception]) -> bytes:
    """VALUE of a request LINE (want, have, shallow) as an object id, else BAD(LINE): the
    protocol version's own error, as each words it."""
    if not valid_hexsha(value):
        raise bad(line)
    return value


def int_arg(value: bytes, line: bytes, bad: Callable[[bytes], Exception]) -> int:
    """VALUE of a request LINE (deepen, deepen-since) as a number, else BAD(LINE)."""
    try:
        return int(value)
    except ValueError:
        raise bad(line) from None
