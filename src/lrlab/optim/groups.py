"""Param groups as data (in the manner of timm's ``_param_groups``).

:func:`param_groups` turns a model into a list of torch param-group dicts:

- **no weight decay** on biases, on parameters of normalisation layers (BatchNorm, LayerNorm,
  GroupNorm, InstanceNorm, RMSNorm, ... detected by module type), on every parameter with
  ``ndim <= 1``, on names matching a ``no_decay`` pattern (fnmatch), and on the names the
  model lists in ``model.no_weight_decay()`` (timm/BEiT convention; fnmatch patterns allowed);
- **LR multipliers** by name pattern: ``lr_mult={"head.*": 10.0}``; a parameter matching
  several patterns gets the product of their multipliers;
- **layer-wise LR decay** (BEiT): layer ``i`` of ``0..L`` gets ``layer_decay ** (L - i)``.

Layer numbering for a generic model: walk the model's top-level children in registration
order, expanding a top-level ``nn.Sequential``/``nn.ModuleList`` into its own children, and
number the units that own parameters 0, 1, ..., L. Parameters registered directly on the
model (``cls_token``, ``pos_embed``) are layer 0 like the first unit (the embedding); the
last unit (the head) is layer L and keeps the full LR.

Each group carries ``lr`` = base lr × its multiplier and ``initial_lr`` (the same value), so
an LR scheduler scales all groups in proportion, plus ``lr_scale`` (the multiplier),
``weight_decay`` and ``param_names``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from lrlab.errors import LrlabError


def _norm_types() -> tuple[type[nn.Module], ...]:
    types: list[type[nn.Module]] = [
        nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
        nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
    ]
    rms = getattr(nn, "RMSNorm", None)
    if rms is not None:
        types.append(rms)
    return tuple(types)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(name == pat or fnmatchcase(name, pat) for pat in patterns)


def no_decay_names(model: nn.Module, no_decay: Iterable[str] = ()) -> set[str]:
    """Names of the parameters of ``model`` that get no weight decay (see the module doc)."""
    norm_types = _norm_types()
    listed: set[str] = set()
    fn = getattr(model, "no_weight_decay", None)
    if callable(fn):
        listed = {str(n) for n in fn()}
    patterns = tuple(no_decay)
    out: set[str] = set()
    for mod_name, module in model.named_modules():
        is_norm = isinstance(module, norm_types)
        for p_name, p in module.named_parameters(recurse=False):
            name = f"{mod_name}.{p_name}" if mod_name else p_name
            if (is_norm or p.ndim <= 1 or p_name == "bias" or _matches(name, patterns)
                    or _matches(name, listed)):
                out.add(name)
    return out


def layer_ids(model: nn.Module) -> tuple[dict[str, int], int]:
    """Map each parameter name to its layer id; return ``(ids, L)`` with ids in ``0..L``."""
    units: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential | nn.ModuleList):
            units += [(f"{name}.{sub}", m) for sub, m in child.named_children()]
        else:
            units.append((name, child))
    ids: dict[str, int] = {n: 0 for n, _ in model.named_parameters(recurse=False)}
    layer = 0
    for prefix, unit in units:
        names = [f"{prefix}.{n}" for n, _ in unit.named_parameters()]
        names = [n for n in names if n not in ids]  # shared parameters keep their first id
        if not names:
            continue
        for n in names:
            ids[n] = layer
        layer += 1
    return ids, max(layer - 1, 0)


def param_groups(model: nn.Module, weight_decay: float, *, lr: float | None = None,
                 no_decay: Iterable[str] = (), lr_mult: Mapping[str, float] | None = None,
                 layer_decay: float | None = None) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into torch param groups.

    Args:
        model: the model; ``model.no_weight_decay()``, if defined, lists names (or fnmatch
            patterns) to exempt from weight decay.
        weight_decay: decay for the parameters that take it (0 for the others).
        lr: base (peak) LR; when given each group gets ``lr`` and ``initial_lr`` =
            ``lr * lr_scale``.
        no_decay: extra fnmatch name patterns without weight decay.
        lr_mult: ``{pattern: multiplier}``; all matching patterns multiply.
        layer_decay: BEiT layer-wise decay in (0, 1]; layer i of L gets ``decay**(L-i)``.

    Returns:
        A list of dicts with ``params``, ``param_names``, ``weight_decay``, ``lr_scale`` (and
        ``lr``, ``initial_lr`` when ``lr`` is given), in order of first appearance.
    """
    if not isinstance(model, nn.Module):
        raise LrlabError(f"param_groups needs an nn.Module, got {type(model).__name__}")
    if not float(weight_decay) >= 0.0:
        raise LrlabError(f"weight_decay must be >= 0, got {weight_decay}")
    if layer_decay is not None and not 0.0 < float(layer_decay) <= 1.0:
        raise LrlabError(f"layer_decay must be in (0, 1], got {layer_decay}")
    mults = dict(lr_mult or {})
    for pat, m in mults.items():
        if not float(m) >= 0.0:
            raise LrlabError(f"lr_mult[{pat!r}] must be >= 0, got {m}")
    skip = no_decay_names(model, no_decay)
    ids, last = layer_ids(model) if layer_decay is not None else ({}, 0)

    groups: dict[tuple[bool, float], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = 1.0
        for pat, m in mults.items():
            if _matches(name, (pat,)):
                scale *= float(m)
        if layer_decay is not None:
            scale *= float(layer_decay) ** (last - ids.get(name, 0))
        decay = name not in skip and weight_decay > 0
        key = (decay, scale)
        if key not in groups:
            g: dict[str, Any] = {"params": [], "param_names": [],
                                 "weight_decay": float(weight_decay) if decay else 0.0,
                                 "lr_scale": scale}
            if lr is not None:
                g["lr"] = g["initial_lr"] = float(lr) * scale
            groups[key] = g
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return list(groups.values())


def parameters_of(model_or_params: Any) -> list[Any]:
    """Params or param groups from a module, an iterable of tensors or of group dicts."""
    if isinstance(model_or_params, nn.Module):
        return [p for p in model_or_params.parameters() if p.requires_grad]
    if isinstance(model_or_params, torch.Tensor):
        return [model_or_params]
    try:
        return list(model_or_params)
    except TypeError:
        raise LrlabError(f"expected a model, parameters or param groups, got "
                         f"{type(model_or_params).__name__}") from None
