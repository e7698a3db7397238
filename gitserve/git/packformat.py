"""The pack entry header, decoded and encoded in one place.

A pack entry starts with a varint of its type (3 bits) and inflated size; an OFS_DELTA then
names its base by a distance back (git's "offset encoding": each continuation byte adds one
before shifting, so no two encodings mean the same distance), a REF_DELTA by the base's id.
A delta's zlib stream starts with two plain varints: the base's size and the result's size.

packcopy (rewriting OFS_DELTA distances), quarantine (blob sizes without inflating blobs)
and packstream (the lean copy pass) all read these; dulwich's own decoder is private.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO, Callable
from .errors import PackFormatError

COMMIT, TREE, BLOB, TAG = 1, 2, 3, 4
OFS_DELTA, REF_DELTA = 6, 7
DELTA_TYPES = (OFS_DELTA, REF_DELTA)
MAX_HEADER = 16  # bytes: a size of 2**64 - 1 needs 10; anything longer is garbage


def entry_header(data: bytes | memoryview, pos: int = 0) -> tuple[int, int, int]:
    """(type, size, index just after the type/size varint) of the entry at DATA[POS:]."""
    if pos >= len(data):
        raise PackFormatError("truncated pack entry")
    c = data[pos]
    kind, size, shift = (c >> 4) & 7, c & 0x0F, 4
    pos += 1
    while c & 0x80:
        if pos >= len(data):
            raise PackFormatError("truncated pack entry header")
        if shift > 7 * MAX_HEADER:
            raise PackFormatError("pack entry header too long")
        c = data[pos]
        size |= (c & 0x7F) << shift
        shift += 7
        pos += 1
    return kind, size, pos


def ofs_distance(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(distance back to the base, index after it) of the OFS_DELTA base at DATA[POS:]."""
    if pos >= len(data):
        raise PackFormatError("truncated delta base offset")
    c = data[pos]
    distance = c & 0x7F
    pos += 1
    n = 1
    while c & 0x80:
        if pos >= len(data) or n > MAX_HEADER:
            raise PackFormatError("truncated delta base offset")
        c = data[pos]
        distance = ((distance + 1) << 7) | (c & 0x7F)
        pos += 1
        n += 1
    return distance, pos


def read_varint_bytes(read: Callable[[int], bytes]) -> bytes:
    """The bytes of one MSB-continued varint read one at a time from READ (a stream)."""
    out = bytearray()
    while True:
        b = read(1)
        if not b:
            raise PackFormatError("truncated pack entry header")
        out += b
        if not b[0] & 0x80:
            return bytes(out)
        if len(out) > MAX_HEADER:
            raise PackFormatError("pack entry header too long")


def read_entry_header(read: Callable[[int], bytes]) -> tuple[int, int, bytes]:
    """(type, size, raw header bytes) of the next entry of a pack stream."""
    raw = read_varint_bytes(read)
    kind, size, _ = entry_header(raw)
    return kind, size, raw


def read_ofs_distance(read: Callable[[int], bytes]) -> int:
    """The OFS_DELTA distance that follows an entry header in a pack stream."""
    return ofs_distance(read_varint_bytes(read), 0)[0]


def encode_header(kind: int, size: int) -> bytes:
    out = bytearray()
    c = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(c | 0x80)
        c = size & 0x7F
        size >>= 7
    out.append(c)
    return bytes(out)


def encode_ofs(distance: int) -> bytes:
    out = [distance & 0x7F]
    distance >>= 7
    while distance:
        distance -= 1
        out.append(0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(reversed(out))


def delta_result_size(f: BinaryIO) -> int:
    """The result size from a delta's header: F is at the start of the delta's zlib stream;
    only its first bytes are inflated."""
    d = zlib.decompressobj()
    data = b""
    while len(data) < 20:
        chunk = f.read(256)
        if not chunk:
            break
        data += d.decompress(chunk, 20 - len(data))
        if d.eof:
            break
    pos = 0
    value = 0
    for _ in range(2):  # base size, then result size
        value, shift = 0, 0
        while True:
            if pos >= len(data):
                raise PackFormatError("truncated delta header")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
    return value
