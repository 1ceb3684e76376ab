"""Write synthetic IDX files (MNIST layout) for tests.

The header is written here from the format's definition, independently of
``lrlab.lab.data.idx``: big-endian uint32 magic (2051 for images, 2049 for labels), one uint32
per dimension, then the uint8 data.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

FILE_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    """An IDX file's bytes: the header for ``magic`` and ``dims``, then ``payload`` as is."""
    return struct.pack(f">I{len(dims)}I", magic, *dims) + payload


def write_bytes(path: str | Path, data: bytes, gz: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_idx_images(path: str | Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write uint8 images ``(N, rows, cols)`` to ``path`` (gzip-compressed if ``gz``)."""
    array = np.asarray(array)
    assert array.ndim == 3 and array.dtype == np.uint8
    return write_bytes(path, idx_bytes(IMAGES_MAGIC, array.shape, array.tobytes()), gz)


def write_idx_labels(path: str | Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write uint8 labels ``(N,)`` to ``path`` (gzip-compressed if ``gz``)."""
    array = np.asarray(array)
    assert array.ndim == 1 and array.dtype == np.uint8
    return write_bytes(path, idx_bytes(LABELS_MAGIC, array.shape, array.tobytes()), gz)


@dataclass
class MnistArrays:
    """What ``write_mnist_dir`` wrote (uint8 arrays) and where."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    paths: dict[str, Path]


def file_name(key: str, gz: bool = False) -> str:
    return FILE_NAMES[key] + (".gz" if gz else "")


def write_mnist_dir(
    directory: str | Path, n_train: int, n_test: int, gz: bool = False, seed: int = 0
) -> MnistArrays:
    """Write the four MNIST-layout IDX files of random 28x28 images and labels 0..9."""
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    paths = {}
    for key, array in arrays.items():
        write = write_idx_images if key.startswith("x") else write_idx_labels
        paths[key] = write(directory / file_name(key, gz), array, gz=gz)
    return MnistArrays(paths=paths, **arrays)


def write_learnable_mnist_dir(
    directory: str | Path, n_train: int, n_test: int, seed: int = 0
) -> MnistArrays:
    """Like ``write_mnist_dir`` but learnable: class k lights a 7x7 block at a k-th position
    (on a noisy background), so a small model gets well above chance in an epoch or two."""
    directory = Path(directory)
    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        x = rng.integers(0, 96, size=(n, 28, 28), dtype=np.uint8)
        for i, k in enumerate(y):
            r, c = divmod(int(k), 4)
            x[i, 7 * r:7 * r + 7, 7 * c:7 * c + 7] = rng.integers(160, 256, size=(7, 7))
        return x, y

    x_train, y_train = make(n_train)
    x_test, y_test = make(n_test)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    paths = {}
    for key, array in arrays.items():
        write = write_idx_images if key.startswith("x") else write_idx_labels
        paths[key] = write(directory / file_name(key), array)
    return MnistArrays(paths=paths, **arrays)
