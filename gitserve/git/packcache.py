"""Generated packs kept on disk, keyed by what was asked: many CI workers cloning one commit
make one pack, and the rest are file copies.

Only requests without haves are cached (clones, shallow clones): their pack depends on the
wanted tips, the shallow boundary and the capabilities, never on what a client happens to
have, so a key is worth keeping. A pack enters the cache only once it was streamed to the
end; concurrent identical requests wait for the first one (flock, so it also works across
processes) and then copy its file. The directory is bounded (oldest-used evicted first).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gitserve.fsutil import locked
from gitserve.git.packcopy import FRAME

DEFAULT_MAX_BYTES = 2 << 30


def cache_key(repo_path: str, wants: Iterable[bytes], shallow: Iterable[bytes], depth: object,
              flags: Iterable[str], tagged: Iterable[tuple[bytes, bytes]] = ()) -> str:
    h = hashlib.sha256()
    h.update(os.path.realpath(repo_path).encode())
    for part in (sorted(wants), sorted(shallow), [str(depth).encode()],
                 sorted(f.encode() for f in flags), sorted(a + b for a, b in tagged)):
        h.update(b"\0" + b",".join(part))
    return h.hexdigest()


class PackCache:
    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._evict_lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pack"

    @contextmanager
    def single_flight(self, key: str) -> Iterator[None]:
        """Held while one request generates KEY; others wait here, then find it cached."""
        with locked(self._path(key).with_suffix(".lock")):
            yield

    def send(self, key: str, write: Callable[[bytes], None]) -> bool:
        """Stream the cached pack KEY to WRITE; False if it is not cached."""
        path = self._path(key)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return False
        with f:
            os.utime(path)  # mark as recently used
            while True:
                chunk = f.read(FRAME)
                if not chunk:
                    break
                write(chunk)
        return True

    @contextmanager
    def recording(self, key: str, write: Callable[[bytes], None]
                  ) -> Iterator[Callable[[bytes], None]]:
        """A WRITE that also records the stream; kept only if the block ends normally."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        f = open(tmp, "wb")

        def tee(data: bytes) -> None:
            f.write(data)
            write(data)

        try:
            yield tee
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        f.close()
        os.replace(tmp, path)
        self.evict()

    def evict(self) -> None:
        """Drop least recently used packs until the cache fits in max_bytes."""
        with self._evict_lock:
            files = []
            for p in self.root.glob("*/*.pack"):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                files.append((st.st_mtime, st.st_size, p))
            total = sum(size for _, size, _ in files)
            for _, size, p in sorted(files):
                if total <= self.max_bytes:
                    break
                p.unlink(missing_ok=True)
                total -= size
