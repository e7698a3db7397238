"""Masking secret values in everything a build or a notification writes.

A build log, a deploy line, a notification's text: each passes a Masker of every secret
value the writer knows, so a script that prints its token shows `***`.
"""

from __future__ import annotations

import re

MASK = "***"


class Masker:
    """Replaces every occurrence of a secret value (and of each line of a multi-line one)."""

    def __init__(self, values: list[str]) -> None:
        parts: set[str] = set()
        for value in values:
            for piece in [value, *value.splitlines()]:
                piece = piece.strip("\r\n")
                if piece:
                    parts.add(piece)
        self._pattern = (re.compile("|".join(re.escape(p) for p in sorted(parts, key=len, reverse=True)))
                         if parts else None)

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text
