"""Param groups as data (in the manner of timm's ``_param_groups``).

:func:`param_groups` turns a model into a list of torch param-group dicts:

- **no weight decay** on biases, on parameters of normalisation layers (BatchNorm, LayerNorm,
  GroupNorm, InstanceNorm, RMSNorm, ... detected by module type), on every parameter with
  ``ndim <= 1``, on names matching a ``no_decay`` pattern (fnmatch), and on the names the
  model lists in ``model.no_weight_decay()`` (timm/BEiT convention; fnmatch patterns allowed);
- **LR multipliers** by name pattern: ``lr_mult={"head.*": 10.0}``; a parameter matching
  several patterns gets the product of their multipliers;
- **layer-wise LR decay** (BEiT, Bao et al. 2021, arXiv:2106.08254): every parameter gets a
  layer id ``i`` in ``0..L`` and its LR is scaled by ``layer_decay ** (L - i)``, so the top
  layer keeps the full LR and each layer below it one more factor.

Layer ids (:func:`layer_ids`), from the first rule that applies:

1. ``layer_id_fn(name) -> int``, given by the caller: any layering at all. ``L`` is the
   largest id returned.
2. ``model.group_matcher(coarse=False)``, the method timm models define, read as timm reads
   it: a dict ``{group: regex | [(regex, suffix), ...]}`` or a callable ``name -> ordinal``;
   a name gets the ordinal ``(position of its group, numbers the regex captured, *suffix)``
   (unmatched names: infinity), ordinals are numbered in sorted order, and an ordinal ending
   in ``99999`` joins the layer before it. ``L`` is the largest id. On a timm ViT this puts
   the final ``norm`` with the last block and the head alone on top, as timm's
   ``param_groups_layer_decay`` does.
3. A top-level ``blocks`` (``nn.Sequential`` or ``nn.ModuleList`` of N blocks, the ViT/BEiT
   layout): BEiT's rule. ``cls_token``, ``mask_token``, ``pos_embed`` and ``patch_embed.*``
   are layer 0, ``blocks.i.*`` is layer ``i + 1``, and everything else (the final norm,
   ``fc_norm``, the head, a shared ``rel_pos_bias``) is the top layer ``L = N + 1``. With
   decay 0.5 and two blocks: embeddings 0.125, ``blocks.0`` 0.25, ``blocks.1`` 0.5, final
   norm and head 1.
4. Otherwise (models without blocks, such as the lab's LeNet and MLP): walk the model's
   top-level children in registration order, expanding a top-level ``nn.Sequential`` /
   ``nn.ModuleList`` into its own children, and number the units that own parameters
   0, 1, ..., L. Parameters registered directly on the model (or on a top-level container)
   are layer 0 like the first unit; the last unit (the head) is layer L and keeps the full
   LR. A parameter shared by several units keeps the id of the first.

**Muon's split** (:func:`muon_names`, :func:`split_for_muon`): Muon updates the ``weight`` of
every ``nn.Linear`` but the output layer (the last one registered), AdamW everything else
(embeddings, biases, norms, convolution kernels, the output layer).

Each group carries ``lr`` = base lr × its multiplier and ``initial_lr`` (the same value), so
an LR scheduler scales all groups in proportion, plus ``lr_scale`` (the multiplier),
``weight_decay`` and ``param_names``.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from lrlab.errors import LrlabError

# BEiT's embedding parameters (layer 0), besides everything under ``patch_embed``.
BEIT_EMBEDDINGS: tuple[str, ...] = ("cls_token", "mask_token", "pos_embed")
# timm's group_matcher marker: an ordinal ending in this joins the previous layer.
TIMM_MATCH_PREVIOUS = 99999

LayerIdFn = Callable[[str], int]


# ---------------------------------------------------------------------- argument checks
def number(name: str, value: Any, *, low: float | None = 0.0, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]``; ``low_open``/``high_open`` exclude ends.

    Python numbers only: a bool, a string (even ``"0.1"``) or a tensor is refused rather than
    converted, so what the caller wrote is what runs.

    Raises:
        LrlabError: one line naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = "; a tensor LR needs the optimizer class itself" \
            if isinstance(value, torch.Tensor) else ""
        raise LrlabError(f"{name} must be a number, got {value!r}{hint}")
    x = float(value)
    if not math.isfinite(x):
        raise LrlabError(f"{name} must be finite, got {x}")
    if low is not None and (x <= low if low_open else x < low):
        raise LrlabError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {x:g}")
    if high is not None and (x >= high if high_open else x > high):
        raise LrlabError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {x:g}")
    return x


def name_patterns(name: str, value: Any) -> tuple[str, ...]:
    """Parameter-name patterns: one string is one pattern, else an iterable of strings."""
    if isinstance(value, str):
        return (value,)
    try:
        items = tuple(value)
    except TypeError:
        raise LrlabError(f"{name} must be a name pattern or a list of them, got "
                         f"{value!r}") from None
    for item in items:
        if not isinstance(item, str):
            raise LrlabError(f"{name} patterns must be strings, got {item!r}")
    return items


def _multipliers(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LrlabError(f"lr_mult must be a mapping {{pattern: multiplier}}, got {value!r}")
    out: dict[str, float] = {}
    for pat, m in value.items():
        if not isinstance(pat, str):
            raise LrlabError(f"lr_mult keys must be name patterns (strings), got {pat!r}")
        out[pat] = number(f"lr_mult[{pat!r}]", m)
    return out


# ------------------------------------------------------------------------- weight decay
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


def no_decay_names(model: nn.Module, no_decay: Iterable[str] | str = ()) -> set[str]:
    """Names of the parameters of ``model`` that get no weight decay (see the module doc)."""
    patterns = name_patterns("no_decay", no_decay)
    norm_types = _norm_types()
    listed: set[str] = set()
    fn = getattr(model, "no_weight_decay", None)
    if callable(fn):
        listed = {str(n) for n in fn()}
    out: set[str] = set()
    for mod_name, module in model.named_modules():
        is_norm = isinstance(module, norm_types)
        for p_name, p in module.named_parameters(recurse=False):
            name = f"{mod_name}.{p_name}" if mod_name else p_name
            if (is_norm or p.ndim <= 1 or p_name == "bias" or _matches(name, patterns)
                    or _matches(name, listed)):
                out.add(name)
    return out


# ---------------------------------------------------------------------------- layer ids
def _ids_from_fn(fn: LayerIdFn, names: list[str]) -> dict[str, int]:
    ids = {}
    for n in names:
        i = fn(n)
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0:
            raise LrlabError(f"layer_id_fn({n!r}) returned {i!r}; expected an int >= 0")
        ids[n] = int(i)
    return ids


def _matcher_key(matcher: Any) -> Callable[[str], tuple[float, ...]]:
    """A name -> sortable ordinal function from a timm ``group_matcher`` value."""
    if callable(matcher):
        def call(name: str) -> tuple[float, ...]:
            k = matcher(name)
            return tuple(k) if isinstance(k, Iterable) else (k,)
        return call
    if not isinstance(matcher, Mapping):
        raise LrlabError(f"model.group_matcher() must return a dict or a callable, got "
                         f"{type(matcher).__name__}")
    specs: list[tuple[re.Pattern[str], int, tuple[float, ...]]] = []
    for ordinal, spec in enumerate(matcher.values()):
        if spec is None:
            continue
        entries = [(spec, None)] if isinstance(spec, str) else list(spec)
        for pattern, suffix in entries:
            specs.append((re.compile(pattern), ordinal, tuple(suffix or ())))

    def key(name: str) -> tuple[float, ...]:
        for rx, ordinal, suffix in specs:
            hit = rx.match(name)
            if hit:
                found = tuple(float(x) for x in hit.groups() if x is not None)
                return (ordinal, *found, *suffix)
        return (math.inf,)  # unmatched (neck, head): the last layer
    return key


def _ids_from_matcher(model: nn.Module, names: list[str]) -> dict[str, int]:
    try:
        key = _matcher_key(model.group_matcher(coarse=False))
        keys = {n: tuple(float(x) for x in key(n)) for n in names}
        ordered = sorted(set(keys.values()))
    except LrlabError:
        raise
    except Exception as e:  # the model's own code: a bad regex, a wrong return type
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise LrlabError(f"model.group_matcher(coarse=False) is unusable for layer decay "
                         f"({type(e).__name__}: {first})") from None
    layer_of: dict[tuple[float, ...], int] = {}
    layer = -1
    for k in ordered:
        if layer < 0 or not k or k[-1] != TIMM_MATCH_PREVIOUS:
            layer += 1
        layer_of[k] = layer
    return {n: layer_of[k] for n, k in keys.items()}


def _vit_blocks(model: nn.Module) -> dict[str, int] | None:
    """Position of each child of a top-level ``blocks`` container, or None without one."""
    blocks = model._modules.get("blocks")
    if isinstance(blocks, nn.Sequential | nn.ModuleList):
        return {name: i for i, name in enumerate(blocks._modules)}
    return None


def _beit_ids(names: list[str], blocks: dict[str, int]) -> tuple[dict[str, int], int]:
    top = len(blocks) + 1
    ids = {}
    for n in names:
        head, _, rest = n.partition(".")
        if n in BEIT_EMBEDDINGS or head == "patch_embed":
            ids[n] = 0
        elif head == "blocks" and rest.split(".", 1)[0] in blocks:
            ids[n] = blocks[rest.split(".", 1)[0]] + 1
        else:
            ids[n] = top
    return ids, top


def _generic_ids(model: nn.Module) -> tuple[dict[str, int], int]:
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
    for n, _ in model.named_parameters():  # registered directly on a top-level container
        ids.setdefault(n, 0)
    return ids, max(layer - 1, 0)


def layer_ids(model: nn.Module, layer_id_fn: LayerIdFn | None = None
              ) -> tuple[dict[str, int], int]:
    """Map each parameter name of ``model`` to its layer id; return ``(ids, L)``.

    The rule is the first that applies of: ``layer_id_fn``, ``model.group_matcher``, BEiT's
    rule for a top-level ``blocks``, the generic numbering of top-level units (see the module
    doc for each). Ids are in ``0..L``; layer decay scales layer ``i`` by ``decay**(L - i)``.
    """
    if not isinstance(model, nn.Module):
        raise LrlabError(f"layer_ids needs an nn.Module, got {type(model).__name__}")
    names = [n for n, _ in model.named_parameters()]
    if layer_id_fn is not None:
        if not callable(layer_id_fn):
            raise LrlabError(f"layer_id_fn must be a function name -> int, got "
                             f"{layer_id_fn!r}")
        ids = _ids_from_fn(layer_id_fn, names)
        return ids, max(ids.values(), default=0)
    if callable(getattr(model, "group_matcher", None)):
        ids = _ids_from_matcher(model, names)
        return ids, max(ids.values(), default=0)
    blocks = _vit_blocks(model)
    if blocks is not None:
        return _beit_ids(names, blocks)
    return _generic_ids(model)


# ------------------------------------------------------------------------- param groups
def param_groups(model: nn.Module, weight_decay: float, *, lr: float | None = None,
                 no_decay: Iterable[str] | str = (),
                 lr_mult: Mapping[str, float] | None = None,
                 layer_decay: float | None = None,
                 layer_id_fn: LayerIdFn | None = None) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into torch param groups.

    Args:
        model: the model; ``model.no_weight_decay()``, if defined, lists names (or fnmatch
            patterns) to exempt from weight decay; ``model.group_matcher()``, if defined,
            sets the layers of ``layer_decay`` (timm's convention, see the module doc).
        weight_decay: decay for the parameters that take it (0 for the others).
        lr: base (peak) LR; when given each group gets ``lr`` and ``initial_lr`` =
            ``lr * lr_scale``.
        no_decay: extra fnmatch name patterns without weight decay; a single string is one
            pattern.
        lr_mult: ``{pattern: multiplier}``; all matching patterns multiply.
        layer_decay: layer-wise decay in (0, 1]; layer i of L gets ``decay**(L-i)`` (BEiT).
        layer_id_fn: ``name -> layer id`` overriding the built-in layering; needs
            ``layer_decay``.

    Returns:
        A list of dicts with ``params``, ``param_names``, ``weight_decay``, ``lr_scale`` (and
        ``lr``, ``initial_lr`` when ``lr`` is given), in order of first appearance.

    Raises:
        LrlabError: a value of the wrong type or out of range, named in a one-line message.
    """
    if not isinstance(model, nn.Module):
        raise LrlabError(f"param_groups needs an nn.Module, got {type(model).__name__}")
    wd = number("weight_decay", weight_decay)
    base_lr = None if lr is None else number("lr", lr)
    decay = None if layer_decay is None else number("layer_decay", layer_decay, high=1.0,
                                                   low_open=True)
    if layer_id_fn is not None and decay is None:
        raise LrlabError("layer_id_fn needs layer_decay (it only sets the layers it decays)")
    mults = _multipliers(lr_mult)
    skip = no_decay_names(model, no_decay)
    ids, last = layer_ids(model, layer_id_fn) if decay is not None else ({}, 0)

    groups: dict[tuple[bool, float], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = 1.0
        for pat, m in mults.items():
            if _matches(name, (pat,)):
                scale *= m
        if decay is not None:
            scale *= decay ** (last - ids[name])
        decayed = name not in skip and wd > 0
        key = (decayed, scale)
        if key not in groups:
            g: dict[str, Any] = {"params": [], "param_names": [],
                                 "weight_decay": wd if decayed else 0.0, "lr_scale": scale}
            if base_lr is not None:
                g["lr"] = g["initial_lr"] = base_lr * scale
            groups[key] = g
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return list(groups.values())


# --------------------------------------------------------------------------- Muon's split
#: Module types whose ``weight`` matrix Muon updates (a hidden layer's linear map).
MUON_MODULES: tuple[type[nn.Module], ...] = (nn.Linear,)


def output_layer(model: nn.Module) -> str | None:
    """Name of the output layer: the last :data:`MUON_MODULES` module registered in ``model``
    (``named_modules`` order), or None without one. The lab's LeNet and MLP end in their
    classifier Linear; the transformer registers ``head`` after its blocks (its final norm
    comes later but is no Linear); a timm model's ``head``/``fc`` is its last Linear too.
    """
    last = None
    for name, module in model.named_modules():
        if isinstance(module, MUON_MODULES):
            last = name
    return last


def muon_names(model: nn.Module, exclude: Iterable[str] | str = ()) -> set[str]:
    """Names of the parameters Muon updates; AdamW takes every other one.

    Muon (Jordan et al. 2024) orthogonalises the update of a hidden layer's weight matrix, so
    it takes the ``weight`` of every :data:`MUON_MODULES` module except :func:`output_layer`
    (the classifier head, whose update the usual split leaves to AdamW), and except a weight
    that is also registered elsewhere (tied to an embedding) or matches an ``exclude``
    pattern. Biases, normalisation layers, embeddings (``nn.Embedding``, a ``pos_embed``
    parameter) and convolution kernels (4-D; ``torch.optim.Muon`` takes 2-D tensors only)
    go to AdamW.
    """
    patterns = name_patterns("exclude", exclude)
    head = output_layer(model)
    owners: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        owners[id(p)] = owners.get(id(p), 0) + 1
    out: set[str] = set()
    for mod_name, module in model.named_modules():
        if not isinstance(module, MUON_MODULES) or mod_name == head:
            continue
        w = getattr(module, "weight", None)
        name = f"{mod_name}.weight" if mod_name else "weight"
        if isinstance(w, nn.Parameter) and w.ndim == 2 and w.requires_grad \
                and owners.get(id(w), 0) == 1 and not _matches(name, patterns):
            out.add(name)
    return out


def split_for_muon(model: nn.Module, groups: list[dict[str, Any]],
                   exclude: Iterable[str] | str = ()) -> list[dict[str, Any]]:
    """``groups`` (from :func:`param_groups`) with each split by :func:`muon_names` and
    flagged ``use_muon``; the AdamW groups come first, so param group 0 is an AdamW group
    whenever there is one (its ``betas`` are the run's β2, e.g. for ``warmup(auto)``)."""
    chosen = muon_names(model, exclude)
    adamw: list[dict[str, Any]] = []
    muon: list[dict[str, Any]] = []
    for g in groups:
        for flag, target in ((False, adamw), (True, muon)):
            pairs = [(p, n) for p, n in zip(g["params"], g["param_names"])
                     if (n in chosen) is flag]
            if pairs:
                target.append({**g, "params": [p for p, _ in pairs],
                               "param_names": [n for _, n in pairs], "use_muon": flag})
    return adamw + muon


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
