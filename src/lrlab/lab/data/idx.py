"""Reading IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a big-endian header followed by raw data:

    magic (4 bytes)  = 0x00 0x00 <type code> <number of dimensions>
    size of dimension 1, 2, … (4 bytes each, unsigned)
    data (row-major, dtype given by the type code)

MNIST-style files hold unsigned bytes (type code 0x08), so the magic number of an image
file (3 dimensions) is 2051 and that of a label file (1 dimension) is 2049. Files may be
gzip-compressed; compression is detected from the content, not the file name.

Every check failure is an :class:`~lrlab.errors.LrlabError` whose one-line message names
the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from lrlab.errors import LrlabError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

_GZIP_SIGNATURE = b"\x1f\x8b"


def read_bytes(path: str | Path) -> bytearray:
    """The content of ``path``, decompressed if it is gzip data (a writable buffer)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = bytearray(os.fstat(f.fileno()).st_size)
            got = f.readinto(raw)
    except OSError as exc:
        raise LrlabError(f"cannot read {path}: {exc.strerror or exc}") from None
    del raw[got:]
    if raw[:2] != _GZIP_SIGNATURE:
        return raw
    try:
        return bytearray(gzip.decompress(raw))
    except (OSError, EOFError, zlib.error) as exc:
        raise LrlabError(f"{path} is not a valid gzip file ({exc})") from None


def _parse_ubyte(path: Path, data: bytearray, magic: int, ndim: int, what: str) -> np.ndarray:
    if len(data) < 4:
        raise LrlabError(f"{path} is truncated: {len(data)} bytes, too short for an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise LrlabError(
            f"{path} has magic number {found}, expected {magic} for IDX {what}"
            " (wrong file, or not an IDX file)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise LrlabError(f"{path} is truncated: {len(data)} bytes, its header needs {header}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)  # Python ints: a crafted header cannot overflow
    shape = "x".join(str(d) for d in dims)
    if len(data) < expected:
        raise LrlabError(
            f"{path} is truncated: header says {shape} {what} ({expected} bytes),"
            f" file holds {len(data)} bytes"
        )
    if len(data) > expected:
        raise LrlabError(
            f"{path} has {len(data) - expected} bytes more than its header ({shape} {what})"
            " announces"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_images(path: str | Path) -> np.ndarray:
    """Images of an IDX3 file (magic 2051) as a uint8 array ``(N, rows, cols)``."""
    path = Path(path)
    return _parse_ubyte(path, read_bytes(path), IMAGES_MAGIC, 3, "images")


def read_idx_labels(path: str | Path) -> np.ndarray:
    """Labels of an IDX1 file (magic 2049) as a uint8 array ``(N,)``."""
    path = Path(path)
    return _parse_ubyte(path, read_bytes(path), LABELS_MAGIC, 1, "labels")
