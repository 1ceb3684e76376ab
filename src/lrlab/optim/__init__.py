"""Optimizers: Lion, teaching optimizers, Muon beside AdamW, adapters for Schedule-Free and
Prodigy, param groups and LR scaling rules."""

from lrlab.optim.build import OPTIMIZERS, SCHEDULE_FREE, build_optimizer
from lrlab.optim.groups import layer_ids, muon_names, no_decay_names, param_groups
from lrlab.optim.lion import Lion
from lrlab.optim.muon import MuonAdamW
from lrlab.optim.scaling import scale_lr, untuned_warmup_steps
from lrlab.optim.teaching import AdamNoBias, NormalizedSGD

__all__ = [
    "OPTIMIZERS",
    "AdamNoBias",
    "Lion",
    "MuonAdamW",
    "SCHEDULE_FREE",
    "NormalizedSGD",
    "build_optimizer",
    "layer_ids",
    "muon_names",
    "no_decay_names",
    "param_groups",
    "scale_lr",
    "untuned_warmup_steps",
]
