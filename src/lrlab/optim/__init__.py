"""Optimizers: Lion, teaching optimizers, param groups and LR scaling rules."""

from lrlab.optim.build import OPTIMIZERS, build_optimizer
from lrlab.optim.groups import layer_ids, no_decay_names, param_groups
from lrlab.optim.lion import Lion
from lrlab.optim.scaling import scale_lr, untuned_warmup_steps
from lrlab.optim.teaching import AdamNoBias, NormalizedSGD

__all__ = [
    "OPTIMIZERS",
    "AdamNoBias",
    "Lion",
    "NormalizedSGD",
    "build_optimizer",
    "layer_ids",
    "no_decay_names",
    "param_groups",
    "scale_lr",
    "untuned_warmup_steps",
]
