"""Receive a pushed pack without holding its objects in memory.

dulwich's `DiskObjectStore.add_thin_pack` copies the incoming pack to a file while it parses
it, and its parser keeps every object's inflated bytes (and its compressed input) until the
next object arrives - only to find where each zlib stream ends, since the copy pass records
nothing but offsets and delta bases. For a push of big blobs that is the whole push's
memory, and then some. Here the copy pass inflates each entry in bounded pieces and drops
them; indexing (object ids, delta resolution) is dulwich's, unchanged, and reads one object
at a time back from the file. So a push's memory follows its biggest object (itself capped
by `max_blob_bytes`), not its size.

It leans on dulwich internals (the pack stream reader's buffer, the store's index and
complete steps), reached through gitserve/_compat/dulwich.py; `available()` says whether
this dulwich has them, else the caller uses `add_thin_pack` as is.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from io import BytesIO
from typing import Any

from dulwich import object_store as _os
from dulwich import pack as _pack

from gitserve._compat import dulwich as dulwich_compat

from . import packformat
from .errors import BlobTooLarge

BLOB_TYPE = packformat.BLOB
INFLATE_PIECE = 1 << 20  # most bytes inflated at once (a tiny zlib input may inflate hugely)


def available(store: Any) -> bool:
    """Whether this dulwich has the internals the lean copy pass needs (gitserve._compat)."""
    return dulwich_compat.lean_thin_pack_available(store)


class _LeanCopier(dulwich_compat.PackStreamCopier):
    """The copy-and-verify pass, keeping no object data (see the module doc)."""

    max_blob_bytes = 0

    def read_objects(self, compute_crc32: bool = False) -> Iterator[_pack.UnpackedObject]:
        _version, self.num_objects = _pack.read_pack_header(self.read)
        for _ in range(self.num_objects):
            offset = self.offset
            unpacked, unused = _skim_object(self.read, self.recv, self.hash_func, self.zlib_bufsize,
                                            self.max_blob_bytes)
            unpacked.offset = offset
            buf = BytesIO()
            buf.write(unused)
            buf.write(self.read_ahead.read())
            buf.seek(0)
            self.read_ahead = buf
            yield unpacked
        if self.buffered_len() < self.hash_size:
            self.read(self.hash_size)
        pack_sha = bytearray(self.trailer)
        if pack_sha != self.sha.digest():
            raise _pack.ChecksumMismatch(_pack.sha_to_hex(bytes(pack_sha)), self.sha.hexdigest())


def _skim_object(read_all: Callable[[int], bytes], read_some: Callable[[int], bytes],
                 hash_func: Callable[[], Any], bufsize: int,
                 max_blob_bytes: int = 0) -> tuple[_pack.UnpackedObject, bytes]:
    """One pack entry's header and delta base; its zlib stream inflated piecewise and dropped.
    Returns the entry (as dulwich's unpack_object would, minus the data) and the bytes read
    past its end. A whole blob over MAX_BLOB_BYTES raises BlobTooLarge at its header."""
    type_num, size, _raw = packformat.read_entry_header(read_all)
    if max_blob_bytes and type_num == BLOB_TYPE and size > max_blob_bytes:
        raise BlobTooLarge(size)
    delta_base: int | bytes | None = None
    if type_num == packformat.OFS_DELTA:
        delta_base = packformat.read_ofs_distance(read_all)
    elif type_num == packformat.REF_DELTA:
        delta_base = read_all(len(hash_func().digest()))
    unpacked = _pack.UnpackedObject(type_num, delta_base=delta_base, decomp_len=size,
                                    hash_func=hash_func)
    inflate = zlib.decompressobj()
    total = 0
    while True:
        data = read_some(bufsize)
        if not data:
            raise zlib.error("EOF before end of zlib stream")
        while data:
            total += len(inflate.decompress(data, INFLATE_PIECE))
            if total > size:
                raise zlib.error("decompressed data exceeds expected size")
            data = inflate.unconsumed_tail
        if inflate.eof:
            break
    if total != size:
        raise zlib.error("decompressed data does not match expected size")
    return unpacked, inflate.unused_data


def add_thin_pack(store: Any, read_all: Callable[[int], bytes],
                  read_some: Callable[[int], bytes] | None, max_input_size: int | None,
                  max_blob_bytes: int = 0) -> Any:
    """`store.add_thin_pack(...)` with the lean copy pass; returns the new Pack. A whole blob
    over MAX_BLOB_BYTES stops the push at its entry header (BlobTooLarge); one stored as a
    delta is caught by the push check after indexing."""
    if max_input_size:
        read_all, read_some = dulwich_compat.bound_read_callables(read_all, read_some, max_input_size)
    fd, path = tempfile.mkstemp(dir=store.path, prefix="tmp_pack_")
    with os.fdopen(fd, "w+b") as f:
        os.chmod(path, _os.PACK_MODE)
        indexer = _pack.PackIndexer(f, store.object_format.hash_func, resolve_ext_ref=store.get_raw)
        copier = _LeanCopier(store.object_format.hash_func, read_all, read_some, f, delta_iter=indexer)
        copier.max_blob_bytes = max_blob_bytes
        copier.verify()
        f.flush()
        f.seek(0)
        with _pack.PackData(path, file=f, object_format=store.object_format) as pd:
            indexer.set_pack_data(pd)
            entries, ext_refs = dulwich_compat.index_pack(store, indexer, len(copier))
        return dulwich_compat.complete_pack(store, f, path, entries, ext_refs)
