"""Small file-system helpers shared by modules that write files other processes read."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(target: Path, text: str, mode: int = 0o644) -> None:
    """Replace TARGET whole: readers (every connection reads gl-perms, description...) see the
    old or the new content, never half a file; concurrent writers never share a temp name."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
