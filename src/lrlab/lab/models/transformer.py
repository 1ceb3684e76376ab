"""A small decoder-only transformer, Post-LN or Pre-LN: the lab's workload where warmup matters.

Xiong et al. (2020, "On Layer Normalization in the Transformer Architecture",
arXiv:2002.04745) show that the original Post-LN transformer (Vaswani et al. 2017) has large
gradients near the output at initialisation and needs a learning-rate warmup to train at
all at usual LRs, while the Pre-LN transformer trains without one. This model has both,
differing *only* in where the LayerNorms sit:

- ``norm="post"`` (Post-LN, Vaswani et al.; Xiong et al. eq. (1)) — each sub-layer ``F``
  is followed by its residual addition, then a LayerNorm::

      x = LN(x + F(x))          for F = attention, then F = MLP; no final LayerNorm

- ``norm="pre"`` (Pre-LN, GPT-2; Xiong et al. eq. (2)) — the LayerNorm is inside the
  residual branch, and one final LayerNorm sits before the head::

      x = x + F(LN(x))          for F = attention, then F = MLP; then x = LN_final(x)

The rest (both variants): learned token and position embeddings added together (no
LayerNorm on the embeddings, no dropout anywhere, so a forward pass is deterministic);
``depth`` blocks of causal multi-head self-attention (``heads`` heads of ``width / heads``
dimensions, one fused ``qkv`` Linear, ``torch.nn.functional.scaled_dot_product_attention``
with ``is_causal=True``, an output projection) and an MLP ``Linear(width, 4·width) - GELU
(exact, erf) - Linear(4·width, width)``; a Linear head giving ``classes`` logits at every
position: ``(N, T) int64 tokens -> (N, T, classes)`` logits. The head is not tied to the
token embedding (the output classes need not be the input vocabulary: ``modadd`` reads the
token ``=`` but never predicts it).

Parameters (:func:`transformer_params`), with V the vocabulary, C the classes, T the
context, d the width, L the depth: ``V·d + T·d + L·(12·d² + 13·d) + d·C + C``, plus ``2·d``
for Pre-LN's final LayerNorm. A block holds ``qkv`` 3d²+3d, ``proj`` d²+d, ``fc1`` 4d²+4d,
``fc2`` 4d²+d and two LayerNorms 2·2d.

Initialisation (GPT-2's, as nanoGPT writes it; Radford et al. 2019): every Linear and
Embedding weight and the position embedding ~ normal(0, 0.02), the two projections that end
a residual branch (``attn.proj``, ``mlp.fc2``) ~ normal(0, 0.02/sqrt(2·depth)) ("scale the
weights of residual layers by 1/sqrt(N)", N = 2·depth residual layers), every bias 0,
LayerNorm weight 1 and bias 0. Both variants get the same initial weights for a given seed,
so a Post-LN/Pre-LN comparison differs in the architecture alone (Pre-LN's final LayerNorm
is created last and draws no random numbers).

Parameter names follow timm's ViT/BEiT layout, so :func:`lrlab.optim.param_groups` layers
them for layer-wise LR decay by BEiT's rule: ``patch_embed.weight`` (the token embedding;
everything under ``patch_embed`` is layer 0) and ``pos_embed`` (``(T, d)``, layer 0),
``blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*`` (layer i+1), then ``norm``
(Pre-LN only) and ``head`` at the top layer ``depth + 1``. Weight decay follows the default
rule (biases, LayerNorms and 1-D tensors exempt), which decays both embeddings as nanoGPT
does.

Default size (``DEFAULT_*``): width 128, depth 4, 4 heads, Pre-LN: 828,264 parameters on
``chars`` (V = C = 104, T = 64), 799,767 on ``modadd`` (V = 24, C = 23, T = 3).

Speed (measured on this project's machine: 2 CPU cores, torch 2.13 CPU, ``lrlab train
--threads 2``, AdamW, the default model; 3 repetitions each with no other job running,
examples/s = sequences/s of the training loop, epoch 2 of 2 for ``chars --limit 1536`` and
the median of epochs 2-30 for ``modadd``):

- ``chars`` (64-character windows): 526-549 sequences/s at ``--batch-size 256`` (the
  default), 488-580 at 64; about 34,000 predicted characters/s. A full epoch (6,538
  windows) is about 12.5 s of training plus 0.45 s of evaluation (validation + test), so 5
  epochs take about 65 s.
- ``modadd`` (3 tokens, 423 training sequences): 8,300-9,000 sequences/s at batch 256 (2
  updates per epoch: 0.054 s per epoch, evaluation and checkpoint included), 5,500-6,200
  at batch 64 (7 updates: 0.075 s per epoch). 1,000 epochs at batch 256 or 500 at batch 64
  (3,500 updates) take about a minute. With AdamW at lr 1e-3, weight decay 0.1 and
  ``warmup(50) >> cosine()`` over 300 epochs at batch 64, train accuracy reached 1.0 near
  epoch 100 (700 updates) and validation accuracy stayed between 0.79 and 0.83 from there
  to epoch 300 (one seed; a width-64, depth-2 model: 0.87 at epoch 50, 0.89 after).

Another job on the two cores halves these figures or worse (the same ``chars`` runs gave
120-250 sequences/s while two other trainings ran).
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
