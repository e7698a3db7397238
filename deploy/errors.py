"""The one exception every deploy step raises, so callers can say which step failed."""

from __future__ import annotations

from gitserve.errors import GitserveError


class DeployError(GitserveError):
    """A deploy or rollback stopped at STEP; the live side was left as it was unless said."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step} failed: {message}")
        self.step = step
        self.message = message
