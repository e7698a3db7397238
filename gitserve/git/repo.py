"""The dulwich repository object the protocol handlers see.

Hidden refs (refs/gitserve/*, where builds keep their state) must never be advertised to
users or be fetchable by sha; dulwich's upload-pack only honours wants that appear in
`get_refs()`, so filtering there hides them from both the advertisement and the wants.
"""

from __future__ import annotations

from dulwich.repo import Repo
from dulwich.server import Backend

HIDDEN_PREFIXES: tuple[bytes, ...] = (b"refs/gitserve/",)


def is_hidden(ref: bytes) -> bool:
    return ref.startswith(HIDDEN_PREFIXES)


class ServedRepo(Repo):
    """A Repo whose ref listing leaves out hidden refs unless `show_hidden`."""

    show_hidden = False

    def get_refs(self):
        refs = super().get_refs()
        if self.show_hidden:
            return refs
        return {name: sha for name, sha in refs.items() if not is_hidden(name)}


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
