"""The dulwich repository object the protocol handlers see.

Hidden refs (refs/gitserve/*, where builds keep their state) must never be advertised to
users or be fetchable by sha; dulwich's upload-pack only honours wants that appear in
`get_refs()`, so filtering there hides them from both the advertisement and the wants.
"""

from __future__ import annotations

from dulwich.repo import Repo

from . import refscan
from dulwich.server import Backend

HIDDEN_PREFIXES: tuple[bytes, ...] = (b"refs/gitserve/",)


def is_hidden(ref: bytes) -> bool:
    return ref.startswith(HIDDEN_PREFIXES)


class ServedRepo(Repo):
    """A Repo whose ref listing leaves out hidden refs unless `show_hidden`.

    Listings come from one scan of the ref storage (refscan.py), not from dulwich's per-ref
    reads, so a repository with tens of thousands of refs still answers in milliseconds;
    peeled tag values seen in packed-refs are kept (a tag object's target never changes)."""

    show_hidden = False
    _peeled: dict[bytes, bytes] | None = None
    _last: dict[bytes, bytes] | None = None

    def listing(self) -> refscan.RefScan:
        """Refs and symrefs of one scan (what ls-refs needs), hidden ones left out."""
        return self._scan()

    def _scan(self) -> refscan.RefScan:
        found = refscan.scan(self.controldir())
        if self._peeled is None:
            self._peeled = {}
        self._peeled.update(found.peeled)
        if not self.show_hidden:
            # a symref pointing into hidden refs would reveal the hidden sha: it goes too
            gone = {n for n, t in found.symrefs.items() if is_hidden(n) or is_hidden(t)}
            found.symrefs = {n: t for n, t in found.symrefs.items() if n not in gone}
            found.refs = {n: s for n, s in found.refs.items()
                          if n not in gone and not is_hidden(n)}
        self._last = found.refs
        return found

    def get_refs(self):
        return self._scan().refs

    def get_symrefs(self) -> dict[bytes, bytes]:
        """Symbolic refs (HEAD included) -> their targets, hidden ones left out."""
        return self._scan().symrefs

    def get_peeled(self, ref):
        """As dulwich's, but from the last listing's packed-refs peel lines when possible."""
        sha = (self._last or {}).get(ref)
        if sha is not None and self._peeled is not None and sha in self._peeled:
            return self._peeled[sha]
        return super().get_peeled(ref)


class SingleRepoBackend(Backend):
    """A backend that serves the one repository this session already resolved and authorised.

    The path argument of the handler is ignored on purpose: the repo was looked up (and
    checked against the access rules) before the protocol started, so the handler can never
    be pointed anywhere else.
    """

    def __init__(self, path: str, show_hidden: bool = False) -> None:
        self.path = path
        self.show_hidden = show_hidden

    def open_repository(self, path: str) -> ServedRepo:
        repo = ServedRepo(self.path)
        repo.show_hidden = self.show_hidden
        return repo
