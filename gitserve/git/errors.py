"""The git layer's errors, under gitserve's one root (gitserve.errors.GitserveError).

Each str() is the one line the client is given (after `ERR `, `NACK `, `unpack `, or as a
transport's `FATAL: `), so a transport that catches GitserveError once never needs to know
these. The ValueError ones are also what parsers of client input raise."""

from __future__ import annotations

from gitserve.errors import GitserveError


class GitError(GitserveError):
    """A git request the server refuses or cannot serve."""


class BadPack(GitError):
    """The pushed pack is unreadable, malformed or not self-consistent (one-line reason)."""


class BlobTooLarge(GitError):
    """A whole (non-delta) blob entry bigger than the limit: refused before it is inflated."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class PackFormatError(GitError, ValueError):
    """Bytes that are not a well-formed pack entry header."""


class PackGenError(GitError):
    """The pack could not be generated (the client sees the message)."""


class FetchError(GitError):
    """A request git's upload-pack would refuse; str() is the text after `ERR `/`fatal: `."""


class ProtocolV2Error(GitError):
    """A malformed request; the client gets `ERR <message>`."""


class FilterError(GitError, ValueError):
    """A filter spec this server does not understand (the client sees the message)."""


class ShallowError(GitError, ValueError):
    """A deepen request git would refuse too (the client sees the message)."""


class ArchiveError(GitError):
    """A request git would refuse; the message goes after `NACK `."""
