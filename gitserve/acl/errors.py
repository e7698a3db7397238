"""Errors of the access engine, with the file:line that every admin needs to fix a conf."""

from __future__ import annotations

from gitserve.errors import GitserveError


class ConfError(GitserveError):
    """The conf cannot be used (Gitolite would die compiling it). str() is `file:line: msg`."""

    def __init__(self, message: str, file: str = "", line: int = 0) -> None:
        self.message = message
        self.file = file
        self.line = line
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}" if where else message)


class AccessError(GitserveError, ValueError):
    """A query Gitolite refuses outright (bad user, repo or ref name): `FATAL: <message>`."""
