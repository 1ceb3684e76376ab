"""Datasets of the lab, held as tensors in memory.

``load_dataset(name)`` returns a :class:`Dataset`: train / test (and for some datasets
validation) tensors, ready to be sliced into batches. Nothing is downloaded and nothing is
cached to disk. ``DATASETS`` holds ``fashion-mnist`` and ``mnist`` (read from their four IDX
files, standardised with the training split's statistics), ``classification`` (the unit-6
benchmark of Deep Learning Fundamentals, with the course's own split), ``blobs`` (a small
two-class check), and the token sequences ``modadd`` and ``chars``
(:mod:`lrlab.lab.data.sequences`). Labels are always int64; ``limit=N`` keeps the first N
training examples (after the validation split is carved, which ``limit`` does not change).

Validation: whatever *chooses* reads the validation split; the test split is only reported.
For ``fashion-mnist``/``mnist`` and ``blobs`` it is carved from the training set: ``val_size``
examples drawn by a permutation seeded with ``VAL_SPLIT_SEED`` (independent of the run's
seed), both parts in the file's order; ``val_size=None`` takes ``DEFAULT_VAL_FRACTION`` of
the training set, ``val_size=0`` keeps every example for training. ``classification``,
``modadd`` and ``chars`` have fixed splits and take no ``val_size``.

The IDX files are looked for in an explicit ``data_dir`` (and nothing else when it is given),
otherwise in each root of ``$LRLAB_DATA``, ``~/.cache/lrlab``, ``/usr/share/datasets`` and
``./data``, in that order; inside a root in the dataset's own folder, then torchvision's
layout, then the root itself. The first directory holding all four files wins.

Each dataset's construction, split sizes and sources: ``docs/datasets.md``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from lrlab.errors import LrlabError
from lrlab.lab.data import sequences
from lrlab.lab.data.idx import read_idx_images, read_idx_labels

DATASETS: tuple[str, ...] = ("fashion-mnist", "mnist", "classification", "blobs", "modadd",
                              "chars")

DATA_ENV = "LRLAB_DATA"
SYSTEM_DATA_DIR = Path("/usr/share/datasets")

IDX_FILES: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

CLASSIFICATION_PARAMS: dict[str, float | int] = {
    "n_samples": 20000,
    "n_features": 100,
    "n_informative": 10,
    "n_redundant": 40,
    "n_repeated": 25,
    "n_clusters_per_class": 5,
    "flip_y": 0.05,
    "class_sep": 0.5,
    "random_state": 123,
}
CLASSIFICATION_SPLIT_SEED = 1
CLASSIFICATION_TEST_SIZE = 0.2
CLASSIFICATION_VAL_SIZE = 0.1

BLOBS_SAMPLES = 1000
BLOBS_FEATURES = 10
BLOBS_CLUSTER_STD = 1.0
BLOBS_TEST_SIZE = 0.2

#: Seed of the validation carve: fixed, so every run is judged on the same examples.
VAL_SPLIT_SEED = 20_231_124
#: Default share of the training file held out for validation, per dataset.
DEFAULT_VAL_FRACTION: dict[str, float] = {"fashion-mnist": 1 / 6, "mnist": 1 / 6, "blobs": 0.25}


@dataclass(frozen=True)
class _ImageSet:
    folder: str
    torchvision: str
    hint: str


_IMAGE_SETS: dict[str, _ImageSet] = {
    "fashion-mnist": _ImageSet(
        folder="fashion-mnist",
        torchvision="FashionMNIST",
        hint="install it with `apt-get install dataset-fashion-mnist`, or put the four IDX"
        f" files in ${DATA_ENV}",
    ),
    "mnist": _ImageSet(
        folder="mnist",
        torchvision="MNIST",
        hint=f"put the four IDX files in ${DATA_ENV}/mnist (torchvision.datasets.MNIST"
        f"(root, download=True) leaves them in root/MNIST/raw; point ${DATA_ENV} at root)",
    ),
}
_IMAGE_SIZE = (28, 28)
_IMAGE_CLASSES = 10


@dataclass
class Dataset:
    """Train / test (and optional validation) tensors of one dataset.

    ``x_*`` are float32 (images ``(N, 1, 28, 28)``, tabular data ``(N, features)``),
    ``y_*`` int64 class indices in ``[0, num_classes)``. ``input_shape`` is the shape of
    one example, ``source`` says where the data came from (a directory, or the generator
    call), ``preprocessing`` how the raw values were transformed.

    Token sequences (``tokens`` is not None): ``x_*`` are ``(N, T)`` int64 token ids in
    ``[0, len(tokens))`` (``tokens[i]`` is the text of id ``i``), ``y_*`` ``(N, T)`` int64
    targets per position, ``-100`` where a position is not counted (see
    :mod:`lrlab.lab.data.targets`); ``input_shape`` is ``(T,)``. ``bpc``: the loss is also
    reported in bits per character (loss / ln 2).

    ``chance_loss`` / ``chance_acc``: what a model that ignores its input reaches, the level
    "not learning" and "collapse" are judged against. None means ``ln(num_classes)`` and
    ``1/num_classes`` (balanced classes: images, tabular data). A sequence dataset sets them
    from its training targets: the entropy of their frequencies (the unigram loss; for
    ``chars`` about 4.7 bits, well below ln 104) and the frequency of the commonest one.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    source: str
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    preprocessing: str = ""
    tokens: tuple[str, ...] | None = None
    bpc: bool = False
    chance_loss: float | None = None
    chance_acc: float | None = None

    @property
    def vocab_size(self) -> int | None:
        """Number of input token ids of a sequence dataset (None for the others)."""
        return None if self.tokens is None else len(self.tokens)

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def n_val(self) -> int:
        return 0 if self.y_val is None else int(self.y_val.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.y_test.shape[0])

    def to(self, device: str | torch.device) -> Dataset:
        """A copy whose tensors live on ``device`` (tensors already there are shared)."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    limit: int | None = None,
    pixels: str = "standard",
    val_size: int | None = None,
    context: int | None = None,
) -> Dataset:
    """Load one of ``DATASETS`` into memory.

    Args:
        name: dataset name (case and ``_``/``-`` do not matter).
        data_dir: where the IDX files are (image datasets only); when given, the only
            place looked at. Default: the search order of this module's docstring.
        seed: random state of the generated ``blobs`` data and of its split; the other
            datasets are fixed and ignore it.
        limit: keep only the first ``limit`` training examples (quick runs, tests).
        pixels: image preprocessing: ``"standard"`` (pixels/255 standardised with the train
            mean and std, the default) or ``"unit"`` (pixels/255 only, as torchvision's
            ``ToTensor`` and D2L's ``load_data_fashion_mnist`` give them).
        val_size: examples held out of the training set for validation (None: the
            dataset's default, 0: none); see *Validation* in the module docstring.
        context: window length of ``chars`` (None: its default); only ``chars`` takes it.

    Returns:
        The :class:`Dataset`, on the CPU.

    Raises:
        LrlabError: unknown name, bad ``limit``, data not found, or a damaged file.
    """
    key = _canonical(name)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise LrlabError(f"limit must be a positive number of examples, got {limit!r}")
    if val_size is not None and (isinstance(val_size, bool) or not isinstance(val_size, int)
                                 or val_size < 0):
        raise LrlabError(f"val-size must be a whole number >= 0, got {val_size!r}")
    if context is not None and key != "chars":
        raise LrlabError(f"context sets the window length of the chars dataset; {key!r} "
                         "does not take it")
    if key in ("modadd", "chars"):
        if data_dir is not None:
            raise LrlabError(f"dataset {key!r} is built in, it takes no data_dir")
        if val_size is not None:
            raise LrlabError(f"val-size: the {key} dataset has a fixed validation split (see "
                             "lrlab.lab.data.sequences); do not give it")
        seqs = sequences.modadd() if key == "modadd" else sequences.chars(context)
        return _sequence_dataset(seqs, limit)
    if key in _IMAGE_SETS:
        if pixels not in ("standard", "unit"):
            raise LrlabError(f"pixels must be 'standard' or 'unit', got {pixels!r}")
        return _load_images(key, data_dir, limit, pixels, val_size)
    if data_dir is not None:
        raise LrlabError(f"dataset {key!r} is generated, it takes no data_dir")
    if key == "classification":
        if val_size is not None:
            raise LrlabError("val-size: the classification dataset keeps the course's own split "
                             "(14,400 train / 1,600 validation / 4,000 test); do not give it")
        return _load_classification(limit)
    return _load_blobs(seed, limit, val_size)


def validation_indices(n: int, val_size: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of a training set of ``n`` examples, each in file order.

    The validation part is ``val_size`` indices drawn by a permutation seeded with
    ``VAL_SPLIT_SEED``; LrlabError when it would leave no training example.
    """
    if val_size >= n:
        raise LrlabError(f"val-size {val_size} leaves no training example: {what} has {n} "
                         "training examples")
    perm = np.random.default_rng(VAL_SPLIT_SEED).permutation(n)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


def default_val_size(name: str, n_train: int) -> int:
    """The validation size used when none is given: ``DEFAULT_VAL_FRACTION`` of the set."""
    return round(DEFAULT_VAL_FRACTION[_canonical(name)] * n_train)


def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist"}.get(key, key)
    if key not in DATASETS:
        raise LrlabError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return key


# --- IDX datasets ----------------------------------------------------------------------


def search_roots(data_dir: str | Path | None = None) -> list[Path]:
    """The roots looked in, in order of precedence (see the module docstring)."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    roots = []
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():  # a typo here must not fall through to other data silently
            raise LrlabError(f"${DATA_ENV} is set to {env!r}, which is not a directory; fix "
                             f"it or unset it")
        roots.append(root)
    roots += [Path.home() / ".cache" / "lrlab", SYSTEM_DATA_DIR, Path("data")]
    return roots


def _dirs_in_root(root: Path, spec: _ImageSet) -> list[Path]:
    return [root / spec.folder, root / spec.torchvision / "raw", root]


def _find_in_dir(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """The IDX files found in ``directory`` and the stems that are missing."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, stem in IDX_FILES.items():
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            missing.append(stem)
    return found, missing


def find_idx_files(name: str, data_dir: str | Path | None = None) -> dict[str, Path]:
    """Paths of the four IDX files of an image dataset (keys ``x_train``, ``y_train``, …).

    Raises:
        LrlabError: ``data_dir`` does not exist, or no directory holds all four files;
            the message lists where it looked and how to get the data.
    """
    key = _canonical(name)
    if key not in _IMAGE_SETS:
        raise LrlabError(f"dataset {key!r} is not read from IDX files")
    spec = _IMAGE_SETS[key]
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise LrlabError(f"data_dir {str(data_dir)!r} does not exist or is not a directory")
    roots = search_roots(data_dir)
    incomplete: list[str] = []
    for root in roots:
        for directory in _dirs_in_root(root, spec):
            if not directory.is_dir():
                continue
            found, missing = _find_in_dir(directory)
            if not missing:
                return found
            if found:
                incomplete.append(f"{directory} lacks {', '.join(m + '[.gz]' for m in missing)}")
    where = ", ".join(str(r) for r in roots)
    inside = f"{spec.folder}/, {spec.torchvision}/raw/ and the root itself"
    if data_dir is None and not os.environ.get(DATA_ENV, "").strip():
        where = f"{where} (${DATA_ENV} not set)"
    message = f"{key} data not found: looked in {where} (in each: {inside})"
    if incomplete:
        message += "; incomplete: " + "; ".join(incomplete)
    raise LrlabError(f"{message}; {spec.hint}")


def _load_images(key: str, data_dir: str | Path | None, limit: int | None,
                 pixels: str = "standard", val_size: int | None = None) -> Dataset:
    paths = find_idx_files(key, data_dir)
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        images = read_idx_images(paths[f"x_{split}"])
        labels = read_idx_labels(paths[f"y_{split}"])
        if images.shape[1:] != _IMAGE_SIZE:
            raise LrlabError(
                f"{paths[f'x_{split}']} holds {images.shape[1]}x{images.shape[2]} images,"
                f" {key} images are {_IMAGE_SIZE[0]}x{_IMAGE_SIZE[1]}"
            )
        if images.shape[0] != labels.shape[0]:
            raise LrlabError(
                f"{key} {split} split: {paths[f'x_{split}']} holds {images.shape[0]} images"
                f" but {paths[f'y_{split}']} holds {labels.shape[0]} labels"
            )
        if labels.size and int(labels.max()) >= _IMAGE_CLASSES:
            raise LrlabError(
                f"{paths[f'y_{split}']} holds label {int(labels.max())}, {key} labels are"
                f" 0..{_IMAGE_CLASSES - 1}"
            )
        arrays[f"x_{split}"], arrays[f"y_{split}"] = images, labels
    if arrays["x_train"].shape[0] == 0:
        raise LrlabError(f"{paths['x_train']} holds no images")
    n = arrays["x_train"].shape[0]
    if val_size is None:
        val_size = default_val_size(key, n)
    x_val = y_val = None
    if val_size:
        train_idx, val_idx = validation_indices(n, val_size, str(paths["x_train"]))
        x_val, y_val = arrays["x_train"][val_idx], arrays["y_train"][val_idx]
        arrays["x_train"] = arrays["x_train"][train_idx]
        arrays["y_train"] = arrays["y_train"][train_idx]

    mean, std = _pixel_stats(arrays["x_train"]) if pixels == "standard" else (0.0, 1.0)
    if limit is not None:
        arrays["x_train"] = arrays["x_train"][:limit]
        arrays["y_train"] = arrays["y_train"][:limit]

    directories = sorted({str(p.parent.resolve()) for p in paths.values()})
    stats = (f"pixels/255, standardised with the training part's mean {mean:.4f} and std "
             f"{std:.4f}" if pixels == "standard" else "pixels/255 (unit range, not standardised)")
    return Dataset(
        name=key,
        x_train=_standardise_pixels(arrays["x_train"], mean, std),
        y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
        x_test=_standardise_pixels(arrays["x_test"], mean, std),
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        x_val=None if x_val is None else _standardise_pixels(x_val, mean, std),
        y_val=None if y_val is None else torch.from_numpy(y_val.astype(np.int64)),
        num_classes=_IMAGE_CLASSES,
        input_shape=(1, *_IMAGE_SIZE),
        source=", ".join(directories),
        preprocessing=f"{stats}; validation: {val_size} of the {n} training images "
        f"(seed {VAL_SPLIT_SEED})",
    )


def _pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and population std of ``images / 255`` over all pixels, computed exactly."""
    flat = torch.from_numpy(np.ascontiguousarray(images).reshape(-1))
    counts = torch.bincount(flat, minlength=256).numpy().astype(np.float64)
    values = np.arange(256, dtype=np.float64) / 255.0
    n = counts.sum()
    mean = float(counts @ values / n)
    var = float(counts @ (values - mean) ** 2 / n)
    std = math.sqrt(var) if var > 0 else 1.0
    return mean, std


def _standardise_pixels(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    x = torch.from_numpy(images.astype(np.float32))
    x.mul_(1.0 / (255.0 * std)).sub_(mean / std)
    return x.unsqueeze(1)


# --- generated datasets ----------------------------------------------------------------


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
    )


def _call(fn: str, params: dict[str, float | int]) -> str:
    return f"sklearn {fn}(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


def _load_classification(limit: int | None) -> Dataset:
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(**CLASSIFICATION_PARAMS)  # type: ignore[arg-type]
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=CLASSIFICATION_TEST_SIZE, random_state=CLASSIFICATION_SPLIT_SEED,
        shuffle=True,
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_train, y_train, test_size=CLASSIFICATION_VAL_SIZE,
        random_state=CLASSIFICATION_SPLIT_SEED, shuffle=True,
    )
    x_train, y_train = x_train[:limit], y_train[:limit]
    xt, yt = _tensors(x_train, y_train)
    xv, yv = _tensors(x_val, y_val)
    xs, ys = _tensors(x_test, y_test)
    return Dataset(
        name="classification",
        x_train=xt, y_train=yt, x_test=xs, y_test=ys, x_val=xv, y_val=yv,
        num_classes=2,
        input_shape=(int(x.shape[1]),),
        source=_call("make_classification", CLASSIFICATION_PARAMS),
        preprocessing="features as generated (float32, not standardised), as in DL Fundamentals"
        f" unit 6; split test_size={CLASSIFICATION_TEST_SIZE} then val"
        f" test_size={CLASSIFICATION_VAL_SIZE}, random_state={CLASSIFICATION_SPLIT_SEED}",
    )


def _load_blobs(seed: int, limit: int | None, val_size: int | None = None) -> Dataset:
    from sklearn.datasets import make_blobs
    from sklearn.model_selection import train_test_split

    params: dict[str, float | int] = {
        "n_samples": BLOBS_SAMPLES,
        "n_features": BLOBS_FEATURES,
        "centers": 2,
        "cluster_std": BLOBS_CLUSTER_STD,
        "random_state": seed,
    }
    x, y = make_blobs(**params)  # type: ignore[arg-type]
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=BLOBS_TEST_SIZE, stratify=y, random_state=seed
    )
    n = len(x_train)
    if val_size is None:
        val_size = default_val_size("blobs", n)
    xv = yv = None
    if val_size:
        train_idx, val_idx = validation_indices(n, val_size, "blobs")
        x_val, y_val = x_train[val_idx], y_train[val_idx]
        x_train, y_train = x_train[train_idx], y_train[train_idx]
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    x_train = (x_train - mean) / std
    x_test = (x_test - mean) / std
    if val_size:
        xv, yv = _tensors((x_val - mean) / std, y_val)
    x_train, y_train = x_train[:limit], y_train[:limit]
    xt, yt = _tensors(x_train, y_train)
    xs, ys = _tensors(x_test, y_test)
    return Dataset(
        name="blobs",
        x_train=xt, y_train=yt, x_test=xs, y_test=ys, x_val=xv, y_val=yv,
        num_classes=2,
        input_shape=(BLOBS_FEATURES,),
        source=_call("make_blobs", params),
        preprocessing=f"features standardised with the training part's mean/std; split"
        f" test_size={BLOBS_TEST_SIZE}, stratified, random_state={seed}; validation: "
        f"{val_size} of the {n} training examples (seed {VAL_SPLIT_SEED})",
    )


# --- token sequences -------------------------------------------------------------------


def _sequence_dataset(seqs: sequences.Sequences, limit: int | None) -> Dataset:
    """A Dataset of the splits ``lrlab.lab.data.sequences`` made; ``limit`` keeps the first
    training sequences."""
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (
        seqs.splits[k] for k in ("train", "val", "test"))
    counted = y_train[:limit].reshape(-1)
    counted = counted[counted >= 0]
    freq = torch.bincount(counted, minlength=seqs.num_classes).double() / max(len(counted), 1)
    nonzero = freq[freq > 0]
    return Dataset(
        name=seqs.name, x_train=x_train[:limit], y_train=y_train[:limit], x_val=x_val,
        y_val=y_val, x_test=x_test, y_test=y_test, num_classes=seqs.num_classes,
        input_shape=(int(x_train.shape[1]),), source=seqs.source,
        preprocessing=seqs.preprocessing, tokens=seqs.tokens, bpc=seqs.bpc,
        chance_loss=float(-(nonzero * nonzero.log()).sum()), chance_acc=float(freq.max()),
    )
