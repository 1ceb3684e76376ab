"""One run set-up: a config becomes its data, model, device and optimizer factory.

:func:`build_run` is the only place that turns a :class:`TrainConfig` into the things a run
is made of, so the trainer, the LR range test (``--lr auto``, ``lrlab find-lr``) and every
later workload see the same run: the same seeding (``torch.manual_seed`` and ``random.seed``
with the config's seed, right before the model is built, so the initial weights are a
function of the seed alone), the same dataset and validation split, the same model and
memory format, the same param groups and optimizer hyper-parameters.

A new workload joins here: a dataset in ``data``, a model in ``models``, nothing else.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch

from lrlab.lab.data.datasets import Dataset, load_dataset
from lrlab.lab.models.zoo import build_model, parse_hidden
from lrlab.lab.train.config import TrainConfig
from lrlab.lab.train.device import autocast_dtype, select_device

__all__ = ["RunParts", "build_run", "optimizer_hyper"]


def optimizer_hyper(config: TrainConfig) -> dict[str, Any]:
    """The optimizer keywords a config sets explicitly (betas, momentum, eps)."""
    hyper: dict[str, Any] = {}
    if config.betas is not None:
        hyper["betas"] = tuple(config.betas)
    if config.momentum is not None:
        hyper["momentum"] = config.momentum
    if config.eps is not None:
        hyper["eps"] = config.eps
    return hyper


@dataclass
class RunParts:
    """What a run is made of, before any training.

    ``global_batch`` is ``batch_size × world_size × accumulate`` (the examples of one update);
    ``updates_per_epoch`` and ``total_updates`` follow from it and the training split.
    """

    config: TrainConfig
    device: torch.device
    amp: torch.dtype | None
    data: Dataset
    model: torch.nn.Module
    channels_last: bool
    world_size: int
    global_batch: int
    updates_per_epoch: int
    total_updates: int

    def make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """The config's optimizer over the model, with its param groups (no-decay, LR
        multipliers, layer decay) and hyper-parameters, at peak LR ``lr``."""
        from lrlab.optim import build_optimizer

        cfg = self.config
        return build_optimizer(cfg.optimizer, self.model, lr, cfg.weight_decay,
                               no_decay=cfg.no_decay, lr_mult=cfg.lr_mult or None,
                               layer_decay=cfg.layer_decay, **optimizer_hyper(cfg))

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of inputs in the model's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def build_run(config: TrainConfig, world_size: int = 1) -> RunParts:
    """Set up the run ``config`` describes (validated first); see the module docstring.

    Sets torch's CPU threads when the config names them. Raises LrlabError for a bad config,
    missing data, or a model that does not fit the data.
    """
    cfg = config.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = select_device(cfg.device)
    data = load_dataset(cfg.dataset, cfg.data_dir, seed=cfg.seed, limit=cfg.limit,
                        pixels=cfg.pixels, val_size=cfg.val_size,
                        context=cfg.context).to(device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    hidden = parse_hidden(cfg.hidden) if cfg.hidden else None
    model = build_model(cfg.resolved_model(), data, hidden=hidden, norm=cfg.norm,
                        depth=cfg.depth, width=cfg.width, heads=cfg.heads).to(device)
    channels_last = cfg.use_channels_last(device.type) and data.x_train.dim() == 4
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    global_batch = cfg.batch_size * world_size * cfg.accumulate
    updates_per_epoch = math.ceil(data.n_train / global_batch)
    return RunParts(config=cfg, device=device, amp=autocast_dtype(device, cfg.amp), data=data,
                    model=model, channels_last=channels_last, world_size=world_size,
                    global_batch=global_batch, updates_per_epoch=updates_per_epoch,
                    total_updates=updates_per_epoch * cfg.epochs)
