"""The lab's data: datasets held as tensors in memory, and what a target is.

- :mod:`~lrlab.lab.data.datasets`: ``load_dataset(name)`` and the registry ``DATASETS``
  (Fashion-MNIST, MNIST, the unit-6 ``classification`` benchmark, ``blobs``, ``modadd``,
  ``chars``), each with its validation split;
- :mod:`~lrlab.lab.data.idx`: the IDX file format of (Fashion-)MNIST;
- :mod:`~lrlab.lab.data.sequences`: the token-sequence datasets;
- :mod:`~lrlab.lab.data.targets`: one class per example or one per position, and the
  losses and accuracies over counted targets.
"""

from __future__ import annotations

from lrlab.lab.data.datasets import (  # noqa: F401
    BLOBS_CLUSTER_STD,
    BLOBS_FEATURES,
    BLOBS_SAMPLES,
    BLOBS_TEST_SIZE,
    CLASSIFICATION_PARAMS,
    CLASSIFICATION_SPLIT_SEED,
    CLASSIFICATION_TEST_SIZE,
    CLASSIFICATION_VAL_SIZE,
    DATA_ENV,
    DATASETS,
    DEFAULT_VAL_FRACTION,
    IDX_FILES,
    VAL_SPLIT_SEED,
    Dataset,
    default_val_size,
    find_idx_files,
    load_dataset,
    search_roots,
    validation_indices,
)

__all__ = [
    "BLOBS_CLUSTER_STD", "BLOBS_FEATURES", "BLOBS_SAMPLES", "BLOBS_TEST_SIZE",
    "CLASSIFICATION_PARAMS", "CLASSIFICATION_SPLIT_SEED", "CLASSIFICATION_TEST_SIZE",
    "CLASSIFICATION_VAL_SIZE", "DATASETS", "DATA_ENV", "DEFAULT_VAL_FRACTION", "Dataset",
    "IDX_FILES", "VAL_SPLIT_SEED", "default_val_size", "find_idx_files", "load_dataset",
    "search_roots", "validation_indices"
]
