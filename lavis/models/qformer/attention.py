"""Multi-head attention for the Q-Former (BERT naming) on ``scaled_dot_product_attention``.

Module names follow BERT / LAVIS (``self.{query,key,value}``, ``output.{dense,LayerNorm}``) so
BERT and BLIP-2 weights load by name. Masks are boolean, ``True`` = may attend, broadcastable to
``(batch, heads, query_len, key_len)``; ``None`` means everything is visible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KeyValue = tuple[torch.Tensor, torch.Tensor]


class MultiHeadAttention(nn.Module):
    """Projections + SDPA. ``kv_width`` differs from ``hidden`` for cross-attention to the image."""

    def __init__(self, hidden: int, heads: int, kv_width: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(kv_width, hidden)
        self.value = nn.Linear(kv_width, hidden)
        self.dropout = dropout

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        context: torch.Tensor | None = None,
        past: KeyValue | None = None,
    ) -> tuple[torch.Tensor, KeyValue]:
        """Attend from ``hidden`` to ``context`` (cross) or to ``past`` + ``hidden`` (self).

        Returns the context vectors and this call's full key/value (for a prefix cache).
        """
        source = hidden if context is None else context
        key, value = self._split(self.key(source)), self._split(self.value(source))
        if past is not None:
            key = torch.cat([past[0], key], dim=2)
            value = torch.cat([past[1], value], dim=2)
        query = self._split(self.query(hidden))
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        batch, _, length, _ = out.shape
        return out.transpose(1, 2).reshape(batch, length, -1), (key, value)


class AttentionOutput(nn.Module):
    """Projection, dropout, residual, post-LayerNorm (BERT's ``*.output``)."""

    def __init__(self, width_in: int, hidden: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class AttentionBlock(nn.Module):
    """BERT's ``attention`` / ``crossattention`` block: ``self`` (heads) + ``output``."""

    def __init__(
        self, hidden: int, heads: int, kv_width: int, eps: float, attention_dropout: float, hidden_dropout: float
    ) -> None:
        super().__init__()
        self.self = MultiHeadAttention(hidden, heads, kv_width, attention_dropout)
        self.output = AttentionOutput(hidden, hidden, eps, hidden_dropout)

    def forward(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        context: torch.Tensor | None = None,
        past: KeyValue | None = None,
    ) -> tuple[torch.Tensor, KeyValue]:
        attended, present = self.self(hidden, mask, context=context, past=past)
        return self.output(attended, hidden), present
