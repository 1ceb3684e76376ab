"""Token-sequence datasets of the lab: ``modadd`` (generated) and ``chars`` (Python's own docs).

Both give ``x`` of shape ``(N, T)`` (int64 token ids) and ``y`` of shape ``(N, T)`` (int64
class ids, ``IGNORE_INDEX`` = -100 where a position is not counted; see
:mod:`lrlab.lab.data.targets`): the transformer predicts at every position and the loss and
accuracy are over the counted positions. Nothing is downloaded; neither depends on the run's
seed; both have fixed train / validation / test splits (``val_size`` is refused).

``modadd`` — modular addition, ``c = (a + b) mod p`` with ``p = MODADD_P`` = 23
    Each example is the three tokens ``a b =`` (ids ``a``, ``b`` in ``[0, p)`` and ``=`` =
    id ``p``; vocabulary ``p + 1``), and only the last position is counted: its target is
    ``c`` (the other two are ``IGNORE_INDEX``). The model predicts one of ``p`` classes
    (the numbers; ``=`` is never a target), so chance level is ln p and accuracy is the
    accuracy of the answers. All ``p²`` = 529 ordered pairs ``(a, b)`` occur exactly once
    across the splits: a permutation seeded with ``MODADD_SPLIT_SEED`` (fixed) sends the
    first 80 % to training, the next 10 % to validation and the rest to test: 423 / 53 /
    53 examples. Why p = 23: the training set is 423 sequences of 3 tokens, so an epoch of
    the default transformer takes about 0.05 s on two CPU cores (evaluation included) and
    runs of thousands of updates fit in a minute; with 80 % of the table for training it
    generalises within hundreds of updates (figures in :mod:`lrlab.lab.models.transformer`) rather
    than in the long "grokking" runs of Power et al. (2022), who train on 30–50 % of the
    table of p = 97 (9,409 pairs). Validation and test hold 53 examples each, so one
    example is 1.9 points of accuracy.
``chars`` — character-level language modelling on CPython's documentation topics
    The text is ``pydoc_data.topics.topics`` (the topics ``help()`` shows; PSF licence),
    shipped with Python: its values joined in sorted key order with nothing between them.
    On Python 3.11.7 that is 79 topics and 464,970 characters of 103 distinct characters;
    another Python version ships another text (``source`` records its length and SHA-256).
    The text is cut by position into training (the first 90 %), validation (the next 5 %)
    and test (the last 5 %) parts. Each part is cut into non-overlapping windows of
    ``context + 1`` characters, advancing ``context`` characters at a time (window ``k`` of
    a part starts at ``k·context``): ``x`` is a window's first ``context`` characters and
    ``y`` its last ``context`` (the next character at every position), so every character
    of a part but its first is predicted exactly once per epoch and no window crosses a
    part boundary; a part's leftover tail shorter than a window is dropped. With the
    default ``CHARS_CONTEXT`` = 64: 6,538 / 363 / 363 windows (418,432 / 23,232 / 23,232
    predicted characters). The vocabulary is built from the training part only: id 0 is
    ``UNKNOWN`` (any character not in the training part; a validation or test character
    unseen in training maps to it, as input and as target), ids 1.. the training
    part's distinct characters in code-point order. Every position is counted; the
    loss is also reported in bits per character (``train_bpc`` = ``train_loss`` / ln 2,
    ``val_bpc``, ``test_bpc``).

If ``pydoc_data`` is missing (some distributions strip it from their Python), ``chars`` fails
with one line that says where it looked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from lrlab.errors import LrlabError
from lrlab.lab.data.targets import IGNORE_INDEX

__all__ = ["Sequences", "modadd", "chars", "chars_text", "decode", "MODADD_P",
           "MODADD_SPLIT_SEED", "MODADD_FRACTIONS", "CHARS_CONTEXT", "CHARS_FRACTIONS",
           "MAX_CONTEXT", "UNKNOWN", "SEQUENCE_DATASETS"]

SEQUENCE_DATASETS: tuple[str, ...] = ("modadd", "chars")

MODADD_P = 23
#: Seed of the permutation that splits the p² pairs (fixed: the run's seed does not move it).
MODADD_SPLIT_SEED = 20_250_213
#: Shares of the p² pairs for training and validation (test: the rest).
MODADD_FRACTIONS = (0.8, 0.1)

CHARS_CONTEXT = 64
#: Shares of the text for training and validation (test: the rest), by position.
CHARS_FRACTIONS = (0.9, 0.05)
#: Longest context the lab builds (a guard against typos; the position table grows with it).
MAX_CONTEXT = 4096
#: How an unknown character is shown when decoding; its id is 0.
UNKNOWN = "\ufffd"


@dataclass
class Sequences:
    """The splits of a sequence dataset and what describes them; ``lrlab.lab.data.datasets`` makes a
    ``Dataset`` of it (this module stays below ``data`` in the import order).

    ``splits`` maps ``train``/``val``/``test`` to ``(x, y)``, both ``(N, T)`` int64;
    ``tokens[i]`` is the text of token id ``i``; ``bpc``: report bits per character.
    """

    name: str
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    num_classes: int
    tokens: tuple[str, ...]
    source: str
    preprocessing: str
    bpc: bool = False


def modadd_examples(p: int = MODADD_P) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``p²`` examples in the order ``(a, b)`` = (0, 0), (0, 1), ...: ``x`` ``(p², 3)`` =
    ``a b =`` and ``y`` ``(p², 3)`` = ``-100 -100 (a+b) mod p``."""
    a, b = np.divmod(np.arange(p * p), p)
    x = np.stack([a, b, np.full_like(a, p)], axis=1)
    y = np.full_like(x, IGNORE_INDEX)
    y[:, 2] = (a + b) % p
    return torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))


def modadd(p: int = MODADD_P) -> Sequences:
    """The ``modadd`` dataset (module docstring)."""
    x, y = modadd_examples(p)
    n = p * p
    perm = torch.from_numpy(np.random.default_rng(MODADD_SPLIT_SEED).permutation(n))
    n_train = round(MODADD_FRACTIONS[0] * n)
    n_val = round(MODADD_FRACTIONS[1] * n)
    tr, va, te = perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
    return Sequences(
        name="modadd", splits={"train": (x[tr], y[tr]), "val": (x[va], y[va]),
                               "test": (x[te], y[te])},
        num_classes=p, tokens=tuple(str(i) for i in range(p)) + ("=",),
        source=f"generated: (a + b) mod {p} for all {n} pairs a, b in [0, {p})",
        preprocessing=f"tokens 'a b =' (= is id {p}), target at the last position only; "
        f"pairs split {n_train} train / {n_val} validation / {n - n_train - n_val} test by "
        f"numpy default_rng({MODADD_SPLIT_SEED}).permutation",
    )


def chars_text() -> str:
    """The text of ``chars``: ``pydoc_data.topics.topics`` joined in sorted key order.

    Raises:
        LrlabError: pydoc_data is not installed with this Python (one line, saying where).
    """
    import sys

    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise LrlabError(
            "dataset chars needs CPython's pydoc_data.topics (the text of help() topics), "
            f"which this Python ({sys.executable}) lacks: looked for pydoc_data on sys.path "
            f"({', '.join(p for p in sys.path if p) or 'empty'}); install the full Python "
            "standard library (e.g. Debian's libpython3-stdlib / python3-doc)") from None
    return "".join(topics[k] for k in sorted(topics))


def decode(ids: torch.Tensor | list[int], tokens: tuple[str, ...]) -> str:
    """The text of token ``ids`` under a dataset's ``tokens`` (id -> text)."""
    values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    return "".join(tokens[i] for i in values)


def _windows(ids: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows of ``context + 1`` ids advancing by ``context``: (x, y)."""
    n = (len(ids) - 1) // context
    starts = np.arange(n)[:, None] * context
    x = ids[starts + np.arange(context)]
    y = ids[starts + np.arange(1, context + 1)]
    return torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))


def chars(context: int | None = None) -> Sequences:
    """The ``chars`` dataset (module docstring) with windows of ``context`` characters."""
    context = CHARS_CONTEXT if context is None else context
    if isinstance(context, bool) or not isinstance(context, int) or \
            not 2 <= context <= MAX_CONTEXT:
        raise LrlabError(f"context must be a whole number in 2 .. {MAX_CONTEXT}, got "
                         f"{context!r}")
    text = chars_text()
    n = len(text)
    cut1 = int(CHARS_FRACTIONS[0] * n)
    cut2 = cut1 + int(CHARS_FRACTIONS[1] * n)
    parts = {"train": text[:cut1], "val": text[cut1:cut2], "test": text[cut2:]}
    alphabet = sorted(set(parts["train"]))
    tokens = (UNKNOWN, *alphabet)
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    tensors = {}
    for split, part in parts.items():
        if len(part) < context + 1:
            raise LrlabError(f"context {context} is too long: the {split} part of the chars "
                             f"text has {len(part)} characters, fewer than one window "
                             f"(context + 1)")
        ids = np.fromiter((index.get(c, 0) for c in part), dtype=np.int64, count=len(part))
        tensors[split] = _windows(ids, context)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    unseen = sorted(set(parts["val"] + parts["test"]) - set(alphabet))
    import sys

    version = ".".join(str(v) for v in sys.version_info[:3])
    return Sequences(
        name="chars", splits=tensors, num_classes=len(tokens), tokens=tokens, bpc=True,
        source=f"pydoc_data.topics of Python {version}: {len(text)} characters, sha256 "
        f"{digest}...",
        preprocessing=f"contiguous split {cut1} / {cut2 - cut1} / {n - cut2} characters; "
        f"non-overlapping windows of {context}+1 characters; vocabulary of the training part "
        f"({len(alphabet)} characters + unknown = id 0; {len(unseen)} validation/test "
        "characters unseen in training)",
    )
