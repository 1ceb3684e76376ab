"""The lab's models: LeNet, the unit-6 MLP (:mod:`~lrlab.lab.models.zoo`, with
``build_model`` and the registry ``MODELS``) and a small Pre-/Post-LN transformer
(:mod:`~lrlab.lab.models.transformer`).
"""

from __future__ import annotations

from lrlab.lab.models.transformer import (  # noqa: F401
    DEFAULT_DEPTH,
    DEFAULT_HEADS,
    DEFAULT_NORM,
    DEFAULT_WIDTH,
    INIT_STD,
    MLP_RATIO,
    NORMS,
    Transformer,
    transformer_params,
)
from lrlab.lab.models.zoo import (  # noqa: F401
    LENET_INPUT,
    MLP_DEFAULT_HIDDEN,
    MODELS,
    TRANSFORMER_OPTIONS,
    build_model,
    count_params,
    mlp_layout,
    parse_hidden,
)

__all__ = [
    "LENET_INPUT", "MLP_DEFAULT_HIDDEN", "MODELS", "TRANSFORMER_OPTIONS", "build_model",
    "count_params", "mlp_layout", "parse_hidden", "DEFAULT_DEPTH", "DEFAULT_HEADS",
    "DEFAULT_NORM", "DEFAULT_WIDTH", "INIT_STD", "MLP_RATIO", "NORMS", "Transformer",
    "transformer_params"
]
