"""Models of the lab.

``lenet``
    The "modern" LeNet-5 for 1x28x28 images: ReLU activations and max pooling, where the
    original (LeCun et al. 1998, and D2L's ``LeNet``) uses sigmoid and average pooling::

        Conv2d(1, 6, 5, padding=2) - ReLU - MaxPool2d(2)      ->  6x14x14
        Conv2d(6, 16, 5)           - ReLU - MaxPool2d(2)      -> 16x5x5
        Flatten - Linear(400, 120) - ReLU - Linear(120, 84) - ReLU - Linear(84, classes)

    61,706 parameters with 10 classes.
``mlp``
    Flatten, then fully connected layers with ReLU between them. ``hidden`` lists the
    hidden layer widths only; the input width comes from the dataset and the output width
    is its number of classes. Layouts are written input-hidden…-output, so the default for
    ``classification`` (100 features, 2 classes, ``hidden=[100, 50]``) is 100-100-50-2,
    the network of Deep Learning Fundamentals unit 6, and the default for ``blobs`` (10
    features, ``hidden=[50]``) is 10-50-2. Image datasets default to ``hidden=[256]``
    (784-256-10, D2L's MLP on Fashion-MNIST).
``transformer``
    A small decoder-only transformer (:mod:`lrlab.lab.models.transformer`), Post-LN or Pre-LN, for
    the token-sequence datasets (``modadd``, ``chars``): its vocabulary, classes and context
    come from the dataset (``len(dataset.tokens)``, ``num_classes``, ``input_shape[0]``);
    ``norm``/``depth``/``width``/``heads`` default to that module's ``DEFAULT_*``.
    It is the only model for sequences, and it reads nothing else.

LeNet and MLP weights keep torch's default initialisation (``nn.Linear`` / ``nn.Conv2d``:
Kaiming-uniform weights with ``a=sqrt(5)`` and uniform biases in ±1/sqrt(fan_in)); the
transformer has GPT-2's (see its module). Seed torch before building a model to make it
reproducible.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import nn

from lrlab.errors import LrlabError

if TYPE_CHECKING:
    from lrlab.lab.data.datasets import Dataset

MODELS: tuple[str, ...] = ("lenet", "mlp", "transformer")
#: Options of the transformer model only (``build_model`` keywords, TrainConfig fields).
TRANSFORMER_OPTIONS: tuple[str, ...] = ("norm", "depth", "width", "heads")

LENET_INPUT = (1, 28, 28)

MLP_DEFAULT_HIDDEN: dict[str, tuple[int, ...]] = {
    "classification": (100, 50),
    "blobs": (50,),
    "fashion-mnist": (256,),
    "mnist": (256,),
}


def parse_hidden(text: str) -> list[int]:
    """Hidden layer widths from ``"100-50"`` -> ``[100, 50]``.

    Raises:
        LrlabError: an empty string, or a part that is not a positive integer.
    """
    stripped = str(text).strip()
    if not stripped:
        raise LrlabError("hidden sizes are empty; expected widths joined by '-', e.g. 100-50")
    expected = "expected widths joined by '-', e.g. 100-50"
    sizes = []
    for part in stripped.split("-"):
        piece = part.strip()
        if not piece:
            raise LrlabError(f"bad hidden sizes {text!r}: a size is missing ({expected})")
        if not (piece.isascii() and piece.isdigit()) or int(piece) < 1:
            raise LrlabError(
                f"bad hidden sizes {text!r}: {piece!r} is not a positive integer ({expected})"
            )
        sizes.append(int(piece))
    return sizes


def build_model(
    name: str,
    dataset: Dataset | None = None,
    *,
    hidden: list[int] | None = None,
    norm: str | None = None,
    depth: int | None = None,
    width: int | None = None,
    heads: int | None = None,
) -> nn.Module:
    """A freshly initialised model for ``dataset``.

    Args:
        name: one of ``MODELS``.
        dataset: gives the input shape and number of classes. ``lenet`` works without
            one (1x28x28 input, 10 classes); ``mlp`` and ``transformer`` need it.
        hidden: ``mlp`` hidden widths (see the module docstring); default per dataset.
        norm, depth, width, heads: ``transformer`` options (None: its defaults).

    Raises:
        LrlabError: unknown model, a model that does not fit the dataset, bad ``hidden``.
    """
    key = str(name).strip().lower()
    if key not in MODELS:
        raise LrlabError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    options = {"norm": norm, "depth": depth, "width": width, "heads": heads}
    given = [k for k, v in options.items() if v is not None]
    if key != "transformer" and given:
        raise LrlabError(f"{given[0]} applies to the transformer model only, not to {key}")
    if dataset is not None and (dataset.tokens is None) == (key == "transformer"):
        if key == "transformer":
            raise LrlabError(f"the transformer reads token sequences; dataset "
                             f"{dataset.name!r} is not one (use modadd or chars)")
        raise LrlabError(f"dataset {dataset.name!r} is token sequences; {key} cannot read "
                         "them, use the transformer model")
    if key == "transformer":
        if hidden is not None:
            raise LrlabError("hidden sizes apply to the mlp model only, not to transformer")
        return _transformer(dataset, **options)
    if key == "lenet":
        if hidden is not None:
            raise LrlabError("hidden sizes apply to the mlp model only, not to lenet")
        return _lenet(dataset)
    return _mlp(dataset, hidden)


def count_params(model: nn.Module) -> int:
    """Number of scalar parameters of ``model`` (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def _lenet(dataset: Dataset | None) -> nn.Module:
    classes = 10
    if dataset is not None:
        if tuple(dataset.input_shape) != LENET_INPUT:
            shape = "x".join(str(d) for d in dataset.input_shape)
            raise LrlabError(
                f"lenet needs 1x28x28 images, dataset {dataset.name!r} has inputs of shape"
                f" {shape}; use the mlp model"
            )
        classes = dataset.num_classes
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, classes),
    )


def mlp_layout(dataset: Dataset, hidden: list[int] | None = None) -> list[int]:
    """Widths input, hidden…, output of the ``mlp`` for ``dataset``, e.g. [100, 100, 50, 2]."""
    if hidden is None:
        if dataset.name not in MLP_DEFAULT_HIDDEN:
            raise LrlabError(f"no default mlp hidden sizes for dataset {dataset.name!r}")
        hidden = list(MLP_DEFAULT_HIDDEN[dataset.name])
    for h in hidden:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise LrlabError(f"mlp hidden sizes must be positive integers, got {list(hidden)}")
    return [math.prod(dataset.input_shape), *hidden, dataset.num_classes]


def _transformer(dataset: Dataset | None, **options: int | str | None) -> nn.Module:
    from lrlab.lab.models.transformer import Transformer

    if dataset is None or dataset.tokens is None:
        raise LrlabError("the transformer model needs a token-sequence dataset (for its "
                         "vocabulary, classes and context)")
    given = {k: v for k, v in options.items() if v is not None}
    return Transformer(len(dataset.tokens), int(dataset.input_shape[0]),
                       classes=dataset.num_classes, **given)  # type: ignore[arg-type]


def _mlp(dataset: Dataset | None, hidden: list[int] | None) -> nn.Module:
    if dataset is None:
        raise LrlabError("the mlp model needs a dataset (for its input size and classes)")
    widths = mlp_layout(dataset, hidden)
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if i > 0:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)
