"""Masking secret values in everything a build or a notification writes.

A build log, a deploy line, a notification's text: each passes a Masker of every secret
value the writer knows, so a script that prints its token shows `***`.
"""

from __future__ import annotations

import re

MASK = "***"
ENCODED_MIN = 6  # shorter secrets are masked as they are only (their encodings are too common)


def encodings(value: str) -> set[str]:
    """The forms a build can print VALUE in without meaning to hide it: base64 (standard and
    url-safe, at each of the three byte alignments, so `echo "$T" | base64` and a secret in
    the middle of a longer blob are both caught: the part of the encoding that depends only on
    VALUE), hex (both cases) and url-encoding (issue 21, finding 6)."""
    import base64
    from urllib.parse import quote, quote_plus

    raw = value.encode()
    if len(raw) < ENCODED_MIN:
        return set()
    found = {raw.hex(), raw.hex().upper(), quote(value, safe=""), quote_plus(value)}
    for k in range(3):
        # VALUE after k other bytes: the characters whose 6 bits all come from VALUE
        full = base64.b64encode(b"\0" * k + raw + b"\0\0").decode()
        start = (0, 2, 3)[k]
        end = 4 * ((k + len(raw)) // 3) + (0, 1, 2)[(k + len(raw)) % 3]
        core = full[start:end]
        if len(core) >= 6:
            found.add(core)
            found.add(core.replace("+", "-").replace("/", "_"))
    found.discard(value)
    return {f for f in found if f}


class Masker:
    """Replaces every occurrence of a secret value (and of each line of a multi-line one), and
    of its base64, hex and url-encoded forms."""

    def __init__(self, values: list[str]) -> None:
        parts: set[str] = set()
        for value in values:
            for piece in [value, *value.splitlines()]:
                piece = piece.strip("\r\n")
                if piece:
                    parts.add(piece)
                    parts.update(encodings(piece))
        self._pattern = (re.compile("|".join(re.escape(p) for p in sorted(parts, key=len, reverse=True)))
                         if parts else None)

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text
