"""Tests of lrlab.lab.data.idx and lrlab.lab.data.datasets.

Expected values are recomputed here from what the fixtures wrote (IDX datasets) or from
scikit-learn called directly with the documented parameters (generated datasets).
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lrlab.errors import LrlabError
from lrlab.lab.data import datasets as data
from lrlab.lab.data.datasets import DATASETS, Dataset, load_dataset
from lrlab.lab.data.idx import read_idx_images, read_idx_labels
from tests.idx_fixtures import (
    FILE_NAMES,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    file_name,
    idx_bytes,
    write_bytes,
    write_idx_images,
    write_idx_labels,
    write_mnist_dir,
)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real data anywhere: empty HOME, no $LRLAB_DATA, empty cwd and system dir."""
    home = tmp_path / "home"
    cwd = tmp_path / "cwd"
    system = tmp_path / "system"
    for d in (home, cwd, system):
        d.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("LRLAB_DATA", raising=False)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(data, "SYSTEM_DATA_DIR", system)
    return tmp_path


def expected_images(written: np.ndarray, train: np.ndarray) -> np.ndarray:
    """The documented normalisation: pixels/255 standardised with the train split's
    scalar mean and population std, computed in float64."""
    pixels = train.astype(np.float64) / 255.0
    mean, std = pixels.mean(), pixels.std()
    return ((written.astype(np.float64) / 255.0 - mean) / std)[:, None, :, :]


#: The validation carve as documented: numpy's default_rng(20231124).permutation(n); the
#: first val_size indices are validation, the rest training, each kept in file order.
SPLIT_SEED = 20231124


def documented_split(n: int, val_size: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- IDX reading ----------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 256, size=7, dtype=np.uint8)
    pi = write_idx_images(tmp_path / "im", images, gz=gz)
    pl = write_idx_labels(tmp_path / "lb", labels, gz=gz)
    np.testing.assert_array_equal(read_idx_images(pi), images)
    np.testing.assert_array_equal(read_idx_labels(pl), labels)


def test_read_idx_bad_magic_names_file(tmp_path):
    labels = np.zeros(5, dtype=np.uint8)
    path = write_bytes(tmp_path / "labels", idx_bytes(IMAGES_MAGIC, (5,), labels.tobytes()))
    with pytest.raises(LrlabError) as exc:
        read_idx_labels(path)
    message = one_line(exc)
    assert str(path) in message and "2051" in message and "2049" in message


def test_read_idx_truncated_and_oversized(tmp_path):
    payload = bytes(3 * 4 * 4 - 1)
    path = write_bytes(tmp_path / "short", idx_bytes(IMAGES_MAGIC, (3, 4, 4), payload))
    with pytest.raises(LrlabError, match="truncated") as exc:
        read_idx_images(path)
    assert str(path) in one_line(exc)
    path = write_bytes(tmp_path / "long", idx_bytes(LABELS_MAGIC, (3,), bytes(4)))
    with pytest.raises(LrlabError, match="1 bytes more") as exc:
        read_idx_labels(path)
    assert str(path) in one_line(exc)
    path = write_bytes(tmp_path / "header", idx_bytes(IMAGES_MAGIC, (3,), b""))
    with pytest.raises(LrlabError, match="truncated"):
        read_idx_images(path)


def test_read_idx_broken_gzip(tmp_path):
    good = gzip.compress(idx_bytes(LABELS_MAGIC, (100,), bytes(100)))
    path = write_bytes(tmp_path / "labels.gz", good[: len(good) // 2])
    with pytest.raises(LrlabError, match="gzip") as exc:
        read_idx_labels(path)
    assert str(path) in one_line(exc)


# --- IDX datasets ---------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_values(isolated, gz):
    written = write_mnist_dir(isolated / "d", n_train=40, n_test=15, gz=gz, seed=1)
    ds = load_dataset("mnist", isolated / "d")
    assert ds.name == "mnist" and ds.num_classes == 10 and ds.input_shape == (1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    # the default validation split is 1/6 of the training file: round(40 / 6) = 7
    tr, va = documented_split(40, 7)
    assert ds.x_train.shape == (33, 1, 28, 28) and ds.x_test.shape == (15, 1, 28, 28)
    assert ds.x_val.shape == (7, 1, 28, 28) and ds.n_val == 7
    train_pixels = written.x_train[tr]  # statistics of the training part only
    np.testing.assert_allclose(
        ds.x_train.numpy(), expected_images(written.x_train[tr], train_pixels), atol=1e-5)
    np.testing.assert_allclose(
        ds.x_val.numpy(), expected_images(written.x_train[va], train_pixels), atol=1e-5)
    np.testing.assert_allclose(
        ds.x_test.numpy(), expected_images(written.x_test, train_pixels), atol=1e-5)
    np.testing.assert_array_equal(ds.y_train.numpy(), written.y_train[tr])
    np.testing.assert_array_equal(ds.y_val.numpy(), written.y_train[va])
    np.testing.assert_array_equal(ds.y_test.numpy(), written.y_test)
    # without a validation split: every training image, statistics over all of them
    whole = load_dataset("mnist", isolated / "d", val_size=0)
    assert whole.x_val is None and whole.n_train == 40
    np.testing.assert_allclose(
        whole.x_train.numpy(), expected_images(written.x_train, written.x_train), atol=1e-5)
    assert ds.source == str((isolated / "d").resolve())


def test_limit_keeps_first_examples_and_statistics(isolated):
    write_mnist_dir(isolated / "d", n_train=30, n_test=10, seed=2)
    full = load_dataset("mnist", isolated / "d")
    few = load_dataset("mnist", isolated / "d", limit=7)
    assert few.n_train == 7 and few.n_test == 10
    torch.testing.assert_close(few.x_train, full.x_train[:7])
    torch.testing.assert_close(few.y_train, full.y_train[:7])
    torch.testing.assert_close(few.x_test, full.x_test)
    torch.testing.assert_close(few.x_val, full.x_val)  # limit never touches validation
    assert load_dataset("mnist", isolated / "d", limit=1000).n_train == 30 - 5


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_limit(bad):
    with pytest.raises(LrlabError, match="limit"):
        load_dataset("blobs", limit=bad)


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("fashion-mnist", "FashionMNIST/raw"),
        ("mnist", "MNIST/raw"),
        ("fashion-mnist", "fashion-mnist"),
        ("mnist", "mnist"),
        ("mnist", "."),
    ],
)
def test_layouts_found_under_env_root(isolated, monkeypatch, name, layout):
    root = isolated / "root"
    written = write_mnist_dir(root / layout, n_train=6, n_test=4, gz=True, seed=4)
    monkeypatch.setenv("LRLAB_DATA", str(root))
    ds = load_dataset(name, val_size=0)
    np.testing.assert_array_equal(ds.y_train.numpy(), written.y_train)
    assert ds.source == str((root / layout).resolve())


def test_torchvision_layout_under_cwd_data(isolated):
    written = write_mnist_dir(Path("data") / "MNIST" / "raw", n_train=5, n_test=3, seed=5)
    ds = load_dataset("mnist")
    np.testing.assert_array_equal(ds.y_test.numpy(), written.y_test)


def test_env_beats_cache_beats_system(isolated, monkeypatch):
    env_root = isolated / "env"
    cache = isolated / "home" / ".cache" / "lrlab"
    from_env = write_mnist_dir(env_root / "mnist", n_train=8, n_test=3, seed=10)
    from_cache = write_mnist_dir(cache / "mnist", n_train=8, n_test=3, seed=11)
    from_system = write_mnist_dir(isolated / "system" / "mnist", n_train=8, n_test=3, seed=12)
    monkeypatch.setenv("LRLAB_DATA", str(env_root))
    def labels():
        return load_dataset("mnist", val_size=0).y_train.numpy()

    np.testing.assert_array_equal(labels(), from_env.y_train)
    monkeypatch.delenv("LRLAB_DATA")
    np.testing.assert_array_equal(labels(), from_cache.y_train)
    for path in from_cache.paths.values():
        path.unlink()
    np.testing.assert_array_equal(labels(), from_system.y_train)


def test_dataset_folder_beats_root_files(isolated, monkeypatch):
    root = isolated / "root"
    write_mnist_dir(root, n_train=8, n_test=3, seed=20)
    inside = write_mnist_dir(root / "mnist", n_train=8, n_test=3, seed=21)
    monkeypatch.setenv("LRLAB_DATA", str(root))
    np.testing.assert_array_equal(load_dataset("mnist", val_size=0).y_train.numpy(),
                                  inside.y_train)


def test_raw_file_preferred_to_gz(isolated):
    raw = write_mnist_dir(isolated / "d", n_train=8, n_test=3, gz=False, seed=30)
    write_mnist_dir(isolated / "d", n_train=8, n_test=3, gz=True, seed=31)
    ds = load_dataset("mnist", isolated / "d", val_size=0)
    np.testing.assert_array_equal(ds.y_train.numpy(), raw.y_train)


def test_lrlab_data_pointing_at_nothing_is_refused(isolated, monkeypatch):
    monkeypatch.setenv("LRLAB_DATA", str(isolated / "typo"))
    with pytest.raises(LrlabError) as exc:
        load_dataset("fashion-mnist")
    assert "LRLAB_DATA" in one_line(exc) and "not a directory" in one_line(exc)


def test_missing_data_says_where_it_looked(isolated, monkeypatch):
    env_root = isolated / "nowhere"
    env_root.mkdir()
    monkeypatch.setenv("LRLAB_DATA", str(env_root))
    with pytest.raises(LrlabError) as exc:
        load_dataset("fashion-mnist")
    message = one_line(exc)
    for root in (env_root, isolated / "home" / ".cache" / "lrlab", isolated / "system"):
        assert str(root) in message
    assert "data" in message and "FashionMNIST/raw" in message
    assert "apt-get install dataset-fashion-mnist" in message and "$LRLAB_DATA" in message


def test_missing_data_without_env_mentions_it(isolated):
    with pytest.raises(LrlabError) as exc:
        load_dataset("mnist")
    message = one_line(exc)
    assert "$LRLAB_DATA not set" in message and "MNIST/raw" in message


def test_incomplete_directory_is_reported(isolated):
    written = write_mnist_dir(isolated / "d", n_train=4, n_test=2, gz=True)
    written.paths["y_test"].unlink()
    with pytest.raises(LrlabError) as exc:
        load_dataset("mnist", isolated / "d")
    assert f"lacks {FILE_NAMES['y_test']}" in one_line(exc)


def test_explicit_data_dir_that_does_not_exist(isolated):
    missing = isolated / "no-such-dir"
    with pytest.raises(LrlabError) as exc:
        load_dataset("fashion-mnist", missing)
    assert str(missing) in one_line(exc) and "does not exist" in str(exc.value)


def test_explicit_data_dir_is_the_only_place(isolated, monkeypatch):
    write_mnist_dir(isolated / "env" / "mnist", n_train=4, n_test=2)
    monkeypatch.setenv("LRLAB_DATA", str(isolated / "env"))
    (isolated / "empty").mkdir()
    with pytest.raises(LrlabError) as exc:
        load_dataset("mnist", isolated / "empty")
    message = one_line(exc)
    assert str(isolated / "empty") in message and str(isolated / "env") not in message


def test_bad_magic_in_dataset_names_file(isolated):
    written = write_mnist_dir(isolated / "d", n_train=4, n_test=2)
    # a label file where the training images should be
    write_idx_labels(written.paths["x_train"], np.zeros(4, dtype=np.uint8))
    with pytest.raises(LrlabError) as exc:
        load_dataset("mnist", isolated / "d")
    message = one_line(exc)
    assert str(written.paths["x_train"]) in message and "magic number 2049" in message


def test_truncated_dataset_file(isolated):
    written = write_mnist_dir(isolated / "d", n_train=4, n_test=2)
    path = written.paths["x_test"]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(LrlabError, match="truncated") as exc:
        load_dataset("mnist", isolated / "d")
    assert str(path) in one_line(exc)


def test_count_mismatch(isolated):
    written = write_mnist_dir(isolated / "d", n_train=6, n_test=2)
    write_idx_labels(written.paths["y_train"], written.y_train[:5])
    with pytest.raises(LrlabError) as exc:
        load_dataset("mnist", isolated / "d")
    message = one_line(exc)
    assert "6 images" in message and "5 labels" in message


def test_label_out_of_range(isolated):
    written = write_mnist_dir(isolated / "d", n_train=6, n_test=2)
    labels = written.y_test.copy()
    labels[1] = 10
    write_idx_labels(written.paths["y_test"], labels)
    with pytest.raises(LrlabError, match="label 10") as exc:
        load_dataset("mnist", isolated / "d")
    assert str(written.paths["y_test"]) in one_line(exc)


def test_wrong_image_size(isolated):
    written = write_mnist_dir(isolated / "d", n_train=6, n_test=2)
    write_idx_images(written.paths["x_train"], np.zeros((6, 10, 10), dtype=np.uint8))
    with pytest.raises(LrlabError, match="10x10"):
        load_dataset("mnist", isolated / "d")


def test_file_names_match_fixture(isolated):
    assert data.IDX_FILES == FILE_NAMES
    assert file_name("x_train", gz=True) == "train-images-idx3-ubyte.gz"


# --- names, moving ----------------------------------------------------------------------


def test_unknown_dataset_lists_names():
    with pytest.raises(LrlabError) as exc:
        load_dataset("cifar10")
    message = one_line(exc)
    assert all(name in message for name in DATASETS)


def test_name_spelling_is_forgiving(isolated):
    write_mnist_dir(isolated / "d", n_train=3, n_test=2)
    assert load_dataset("Fashion_MNIST", isolated / "d").name == "fashion-mnist"


def test_generated_dataset_takes_no_data_dir(tmp_path):
    with pytest.raises(LrlabError, match="data_dir"):
        load_dataset("blobs", tmp_path)


def test_to_moves_every_tensor():
    ds = load_dataset("classification", limit=10)
    moved = ds.to("meta")
    assert isinstance(moved, Dataset)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert getattr(moved, name).device.type == "meta"
        assert getattr(ds, name).device.type == "cpu"
    assert moved.name == ds.name and moved.input_shape == ds.input_shape


# --- generated datasets -----------------------------------------------------------------

UNIT6 = dict(
    n_samples=20000, n_features=100, n_informative=10, n_redundant=40, n_repeated=25,
    n_clusters_per_class=5, flip_y=0.05, class_sep=0.5, random_state=123,
)


def test_classification_matches_unit6_recipe():
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    ds = load_dataset("classification")
    n_test = math.ceil(0.2 * 20000)  # train_test_split rounds the test part up
    n_val = math.ceil(0.1 * (20000 - n_test))
    n_train = 20000 - n_test - n_val
    assert (ds.n_train, ds.n_val, ds.n_test) == (n_train, n_val, n_test) == (14400, 1600, 4000)
    assert ds.input_shape == (100,) and ds.num_classes == 2
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64

    x, y = make_classification(**UNIT6)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=1, shuffle=True)
    x_tr, x_va, y_tr, y_va = train_test_split(
        x_tr, y_tr, test_size=0.1, random_state=1, shuffle=True
    )
    for got, want in [
        (ds.x_train, x_tr), (ds.x_val, x_va), (ds.x_test, x_te),
        (ds.y_train, y_tr), (ds.y_val, y_va), (ds.y_test, y_te),
    ]:
        np.testing.assert_array_equal(got.numpy(), want.astype(got.numpy().dtype))


def test_classification_is_balanced_and_fixed():
    ds = load_dataset("classification", seed=99)
    for y in (ds.y_train, ds.y_val, ds.y_test):
        share = y.float().mean().item()
        assert 0.45 < share < 0.55
    again = load_dataset("classification", seed=0, limit=100)
    torch.testing.assert_close(again.x_train, ds.x_train[:100])


def test_blobs():
    from sklearn.datasets import make_blobs
    from sklearn.model_selection import train_test_split

    ds = load_dataset("blobs", seed=7)
    assert ds.input_shape == (10,) and ds.num_classes == 2
    assert (ds.n_train, ds.n_val, ds.n_test) == (600, 200, 200)  # 1/4 of 800 for validation
    torch.testing.assert_close(ds.x_train.mean(0), torch.zeros(10), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        ds.x_train.double().std(0, unbiased=False), torch.ones(10, dtype=torch.float64),
        atol=1e-5, rtol=0,
    )
    assert ds.y_test.bincount().tolist() == [100, 100]

    # the documented recipe, done here with scikit-learn and numpy directly
    x, y = make_blobs(n_samples=1000, n_features=10, centers=2, cluster_std=1.0, random_state=7)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=7)
    tr, va = documented_split(800, 200)
    mean, std = x_tr[tr].mean(0), x_tr[tr].std(0)
    np.testing.assert_allclose(ds.x_train.numpy(), (x_tr[tr] - mean) / std, atol=1e-5)
    np.testing.assert_allclose(ds.x_val.numpy(), (x_tr[va] - mean) / std, atol=1e-5)
    np.testing.assert_allclose(ds.x_test.numpy(), (x_te - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(ds.y_train.numpy(), y_tr[tr])
    np.testing.assert_array_equal(ds.y_val.numpy(), y_tr[va])
    np.testing.assert_array_equal(ds.y_test.numpy(), y_te)
    assert load_dataset("blobs", seed=7, val_size=0).n_train == 800

    assert not torch.equal(load_dataset("blobs", seed=8).x_train, ds.x_train)
    torch.testing.assert_close(load_dataset("blobs", seed=7).x_train, ds.x_train)


# --- the real data, where installed -------------------------------------------------------

REAL = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not REAL.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist():
    ds = load_dataset("fashion-mnist", REAL)
    assert ds.x_train.shape == (50000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_val.shape == (10000, 1, 28, 28)
    assert (ds.y_train.bincount() + ds.y_val.bincount()).tolist() == [6000] * 10
    assert ds.y_test.bincount().tolist() == [1000] * 10
    assert abs(ds.x_train.mean().item()) < 1e-4
    assert abs(ds.x_train.double().std(unbiased=False).item() - 1.0) < 1e-4


def test_unit_pixels_are_raw_over_255(tmp_path):
    """pixels='unit' is torchvision's ToTensor scaling (what D2L trains on): raw / 255."""
    arrays = write_mnist_dir(tmp_path, n_train=30, n_test=10, seed=3)
    ds = load_dataset("fashion-mnist", tmp_path, pixels="unit", val_size=0)
    expected = torch.from_numpy(arrays.x_train.astype("float32") / 255.0).unsqueeze(1)
    torch.testing.assert_close(ds.x_train, expected, atol=1e-7, rtol=0)
    with pytest.raises(LrlabError, match="pixels"):
        load_dataset("fashion-mnist", tmp_path, pixels="zscore")


def test_validation_split_is_fixed_disjoint_and_refused_where_it_cannot_apply(tmp_path):
    write_mnist_dir(tmp_path, n_train=30, n_test=10, seed=6)
    a = load_dataset("mnist", tmp_path, val_size=12, seed=1)
    b = load_dataset("mnist", tmp_path, val_size=12, seed=2)  # the run seed does not move it
    torch.testing.assert_close(a.x_val, b.x_val)
    whole = load_dataset("mnist", tmp_path, val_size=0, pixels="unit")
    parts = load_dataset("mnist", tmp_path, val_size=12, pixels="unit")
    rows = {tuple(x.flatten().tolist()) for x in torch.cat([parts.x_train, parts.x_val])}
    assert rows == {tuple(x.flatten().tolist()) for x in whole.x_train}  # a partition
    assert parts.n_train + parts.n_val == 30
    with pytest.raises(LrlabError, match="leaves no training example"):
        load_dataset("mnist", tmp_path, val_size=30)
    with pytest.raises(LrlabError, match="val-size"):
        load_dataset("mnist", tmp_path, val_size=-1)
    with pytest.raises(LrlabError, match="course's own split"):
        load_dataset("classification", val_size=100)


def test_idx_header_sizes_that_would_overflow_are_refused(tmp_path):
    """2**22 x 2**21 x 2**21 images announce 2**64 bytes, which wraps to 0 in int64: a
    header-only file would then pass the size check. It must be called truncated."""
    path = tmp_path / "x-idx3-ubyte"
    dims = (2**22, 2**21, 2**21)
    header = (IMAGES_MAGIC).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    path.write_bytes(header)
    with pytest.raises(LrlabError) as exc:
        read_idx_images(path)
    assert "truncated" in one_line(exc) and str(path) in one_line(exc)
