"""dulwich internals gitserve relies on, each behind one accessor (see the package doc).

Why each is needed:
- Pack file paths (`Pack._data_path`, `._basename`): packcopy/quarantine pread the .pack
  file directly and repack deletes a pack's sibling files; dulwich has no public path.
- `DiskObjectStore._iter_loose_objects`, `._update_pack_cache`: repack deletes the loose
  objects its new pack covers, then makes the store see the pack set it left.
- `object_store._bound_read_callables`, `DiskObjectStore._index_pack`, `._complete_pack`
  and `PackStreamReader`'s read-ahead buffer: packstream's lean copy pass replaces the
  middle of `add_thin_pack` and keeps dulwich's indexing and completion unchanged.
- `server._ProtocolGraphWalker` and the upload-pack handler's have/done state:
  upload.py keeps dulwich's ack negotiation with gitserve's want/shallow/filter parsing.
- `ReceivePackHandler._receive_max_input_size`: receive-pack honours dulwich's
  `receive.maxInputSize` beside gitserve's own push limit.
The pack-entry header decoders are gitserve's own (git/packformat.py), not listed here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from io import BytesIO
from typing import Any, BinaryIO

from dulwich import object_store as _object_store
from dulwich import pack as _pack
from dulwich import server as _server

# (dotted owner, member, how it is reached): "attr" a class attribute or method,
# "instance" set on instances (checked on a real object by the test), "module" a function
INTERNALS: tuple[tuple[str, str, str], ...] = (
    ("dulwich.pack.Pack", "_data_path", "instance"),
    ("dulwich.pack.Pack", "_basename", "instance"),
    ("dulwich.object_store.DiskObjectStore", "_iter_loose_objects", "attr"),
    ("dulwich.object_store.DiskObjectStore", "_update_pack_cache", "attr"),
    ("dulwich.object_store.DiskObjectStore", "_index_pack", "attr"),
    ("dulwich.object_store.DiskObjectStore", "_complete_pack", "attr"),
    ("dulwich.object_store", "_bound_read_callables", "module"),
    ("dulwich.pack.PackStreamReader", "_rbuf", "instance"),
    ("dulwich.pack.PackStreamReader", "_trailer", "instance"),
    ("dulwich.pack.PackStreamReader", "_hash_size", "instance"),
    ("dulwich.pack.PackStreamReader", "_zlib_bufsize", "instance"),
    ("dulwich.pack.PackStreamReader", "_num_objects", "instance"),
    ("dulwich.pack.PackStreamReader", "_buf_len", "attr"),
    ("dulwich.server", "_ProtocolGraphWalker", "module"),
    ("dulwich.server.UploadPackHandler", "_processing_have_lines", "instance"),
    ("dulwich.server.UploadPackHandler", "_done_received", "instance"),
    ("dulwich.server.UploadPackHandler", "_start_pack_send_phase", "attr"),
    ("dulwich.server.ReceivePackHandler", "_receive_max_input_size", "attr"),
)

ProtocolGraphWalker = _server._ProtocolGraphWalker


# --- packs and object stores -------------------------------------------------------

def pack_data_path(pack: Any) -> str:
    """Path of a dulwich Pack's .pack file (without opening it, unlike `pack.data`)."""
    return str(pack._data_path)


def pack_basename(pack: Any) -> str:
    """A Pack's path without extension: `pack-<sha>`, the stem its .idx/.bitmap/.rev share."""
    return str(pack._basename)


def iter_loose_objects(store: Any) -> Iterator[bytes]:
    """The ids of a DiskObjectStore's loose objects."""
    return store._iter_loose_objects()


def rescan_packs(store: Any) -> None:
    """Make a DiskObjectStore see the pack files now on disk (packs moved in or deleted);
    a store without pack files (in memory) has nothing to rescan."""
    refresh = getattr(store, "_update_pack_cache", None)
    if refresh is not None:
        refresh()


def bound_read_callables(read_all: Callable[[int], bytes], read_some: Callable[[int], bytes] | None,
                         max_input_size: int) -> tuple[Callable[[int], bytes],
                                                       Callable[[int], bytes] | None]:
    """dulwich's wrappers that stop reading a pushed pack after MAX_INPUT_SIZE bytes."""
    return _object_store._bound_read_callables(read_all, read_some, max_input_size)


def index_pack(store: Any, indexer: Any, num_objects: int) -> tuple[Any, Any]:
    """`add_thin_pack`'s indexing step: (entries, external refs) of the copied pack."""
    return store._index_pack(indexer, num_objects)


def complete_pack(store: Any, f: BinaryIO, path: str, entries: Any, ext_refs: Any) -> Any:
    """`add_thin_pack`'s last step: thin bases appended, .idx written, pack moved in."""
    return store._complete_pack(f, path, entries, ext_refs)


def lean_thin_pack_available(store: Any) -> bool:
    """Whether STORE and this dulwich have what `PackStreamCopier` below and the
    index/complete steps need (git/packstream.py falls back to `add_thin_pack` if not)."""
    if not all(hasattr(store, n) for n in ("_index_pack", "_complete_pack", "object_format",
                                           "get_raw", "path")):
        return False
    if not hasattr(_object_store, "_bound_read_callables") or not hasattr(_object_store, "PACK_MODE"):
        return False
    probe = _pack.PackStreamCopier(hashlib.sha1, lambda n: b"", None, BytesIO())
    return all(hasattr(probe, n) for n in ("_rbuf", "_buf_len", "_trailer", "_hash_size",
                                           "_zlib_bufsize", "read", "recv"))


class PackStreamCopier(_pack.PackStreamCopier):
    """dulwich's PackStreamCopier with its reader state under public names, for a subclass
    that replaces `read_objects` (git/packstream.py)."""

    @property
    def read_ahead(self) -> BytesIO:
        """The reader's read-ahead buffer (bytes read from the stream but not yet used)."""
        return self._rbuf

    @read_ahead.setter
    def read_ahead(self, buf: BytesIO) -> None:
        self._rbuf = buf

    @property
    def num_objects(self) -> int:
        return self._num_objects

    @num_objects.setter
    def num_objects(self, n: int) -> None:
        self._num_objects = n

    @property
    def zlib_bufsize(self) -> int:
        return self._zlib_bufsize

    @property
    def hash_size(self) -> int:
        return self._hash_size

    @property
    def trailer(self) -> Any:
        """The last hash-size bytes read: the pack checksum once the stream is done."""
        return self._trailer

    def buffered_len(self) -> int:
        return self._buf_len()


# --- upload-pack and receive-pack handlers ------------------------------------------

def begin_have_lines(handler: Any) -> None:
    """Tell an UploadPackHandler its walker is reading `have` lines (dulwich's flag)."""
    handler._processing_have_lines = True


def done_received(handler: Any) -> bool:
    """Whether the client sent `done` (dulwich's walker records it on the handler)."""
    return bool(handler._done_received)


def start_pack_send_phase(handler: Any) -> None:
    """Switch an UploadPackHandler from negotiation to sending the pack (sideband setup)."""
    handler._start_pack_send_phase()


def receive_max_input_size(handler: Any) -> int | None:
    """The repository's `receive.maxInputSize`, as dulwich's receive-pack reads it."""
    return handler._receive_max_input_size()
