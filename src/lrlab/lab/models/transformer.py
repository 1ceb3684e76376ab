"""A small decoder-only transformer, Post-LN or Pre-LN: the lab's workload where warmup matters.

Xiong et al. (2020, arXiv:2002.04745) show that the Post-LN transformer needs a learning-rate
warmup to train at usual LRs, while the Pre-LN transformer trains without one. This model has
both, differing *only* in where the LayerNorms sit:

- ``norm="post"``: ``x = LN(x + F(x))`` for F = attention, then F = MLP; no final LayerNorm;
- ``norm="pre"``: ``x = x + F(LN(x))`` for F = attention, then F = MLP; then
  ``x = LN_final(x)``.

Learned token and position embeddings, ``depth`` blocks of causal self-attention and a
4×-wide GELU MLP, no dropout, and an untied Linear head: ``(N, T)`` int64 tokens ->
``(N, T, classes)`` logits. Parameters (:func:`transformer_params`; V vocabulary, C classes,
T context, d width, L depth): ``V·d + T·d + L·(12·d² + 13·d) + d·C + C``, plus ``2·d`` for
Pre-LN's final LayerNorm. Initialisation is GPT-2's (normal(0, 0.02), the residual
projections scaled by 1/sqrt(2·depth)), the same for both variants at a given seed; names
follow timm's ViT/BEiT layout, so :func:`lrlab.optim.param_groups` can apply layer decay.

The architecture in full, the parameter count per block, the initialisation, the layer ids
and the measured speed on ``chars`` and ``modadd``: ``docs/transformer.md``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lrlab.errors import LrlabError

__all__ = ["Transformer", "transformer_params", "NORMS", "DEFAULT_NORM", "DEFAULT_DEPTH",
           "DEFAULT_WIDTH", "DEFAULT_HEADS", "MLP_RATIO", "INIT_STD"]

NORMS: tuple[str, ...] = ("pre", "post")
DEFAULT_NORM = "pre"
DEFAULT_DEPTH = 4
DEFAULT_WIDTH = 128
DEFAULT_HEADS = 4
MLP_RATIO = 4
INIT_STD = 0.02


def transformer_params(vocab: int, classes: int, context: int, width: int, depth: int,
                       norm: str = DEFAULT_NORM) -> int:
    """Number of parameters of :class:`Transformer`, from the formula of the module docstring.

    ``V·d + T·d + L·(12·d² + 13·d) + d·C + C`` (+ ``2·d`` for Pre-LN's final LayerNorm).
    """
    d = width
    block = 12 * d * d + 13 * d
    final = 2 * d if norm == "pre" else 0
    return vocab * d + context * d + depth * block + final + d * classes + classes


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: one fused ``qkv`` Linear, SDPA, an output ``proj``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        shape = (n, t, self.heads, d // self.heads)
        q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))  # (N, heads, T, d/h)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class MLP(nn.Module):
    """``fc1`` (width -> 4·width), exact GELU, ``fc2`` (4·width -> width)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, MLP_RATIO * width)
        self.fc2 = nn.Linear(MLP_RATIO * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """One transformer block; ``pre`` says where its two LayerNorms sit (module docstring)."""

    def __init__(self, width: int, heads: int, pre: bool) -> None:
        super().__init__()
        self.pre = pre
        self.norm1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre:  # x + F(LN(x))
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attn(x))  # LN(x + F(x))
        return self.norm2(x + self.mlp(x))


class Transformer(nn.Module):
    """Decoder-only transformer: ``(N, T)`` token ids -> ``(N, T, classes)`` logits.

    Args:
        vocab: input vocabulary size (token ids in ``[0, vocab)``).
        classes: output logits per position (the predicted vocabulary); default ``vocab``.
        context: the longest sequence it reads (rows of ``pos_embed``).
        norm: ``"pre"`` or ``"post"`` (module docstring).
        depth, width, heads: blocks, model width, attention heads (``width % heads == 0``).

    Raises:
        LrlabError: a bad size or norm.
    """

    def __init__(self, vocab: int, context: int, *, classes: int | None = None,
                 norm: str = DEFAULT_NORM, depth: int = DEFAULT_DEPTH,
                 width: int = DEFAULT_WIDTH, heads: int = DEFAULT_HEADS) -> None:
        super().__init__()
        classes = vocab if classes is None else classes
        if norm not in NORMS:
            raise LrlabError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        for name, value in (("vocab", vocab), ("classes", classes), ("context", context),
                            ("depth", depth), ("width", width), ("heads", heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LrlabError(f"transformer {name} must be a positive whole number, got "
                                 f"{value!r}")
        if width % heads:
            raise LrlabError(f"transformer width {width} is not divisible by heads {heads}")
        self.norm_kind, self.context = norm, context
        self.patch_embed = nn.Embedding(vocab, width)
        self.pos_embed = nn.Parameter(torch.empty(context, width))
        self.blocks = nn.ModuleList(Block(width, heads, norm == "pre") for _ in range(depth))
        self.head = nn.Linear(width, classes)
        self._init_weights(depth)
        # created after the random draws, so Post-LN and Pre-LN start from the same weights
        self.norm = nn.LayerNorm(width) if norm == "pre" else None

    def _init_weights(self, depth: int) -> None:
        residual_std = INIT_STD / math.sqrt(2 * depth)
        with torch.no_grad():
            for name, module in self.named_modules():
                if isinstance(module, nn.Linear):
                    std = residual_std if name.endswith(("attn.proj", "mlp.fc2")) else INIT_STD
                    nn.init.normal_(module.weight, 0.0, std)
                    nn.init.zeros_(module.bias)
                elif isinstance(module, nn.Embedding):
                    nn.init.normal_(module.weight, 0.0, INIT_STD)
                elif isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
            nn.init.normal_(self.pos_embed, 0.0, INIT_STD)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        if t > self.context:
            raise LrlabError(f"a sequence of {t} tokens is longer than the transformer's "
                             f"context {self.context}")
        x = self.patch_embed(tokens) + self.pos_embed[:t]
        for block in self.blocks:
            x = block(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.head(x)
