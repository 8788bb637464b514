"""One Q-Former layer: shared self-attention, image cross-attention and a feed-forward for the
query positions, BERT's feed-forward for the text positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lavis.common.errors import ConfigError
from lavis.models.qformer.attention import AttentionBlock, AttentionOutput, KeyValue
from lavis.models.qformer.config import QFormerConfig

_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


def activation(name: str):
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(f"model.qformer.hidden_act: unknown activation '{name}'. Known: {sorted(_ACTIVATIONS)}") from None


class Intermediate(nn.Module):
    def __init__(self, cfg: QFormerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = activation(cfg.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class QFormerLayer(nn.Module):
    """``text_ffn=False`` drops BERT's text feed-forward (BLIP-2 T5 never feeds text to the Q-Former)."""

    def __init__(self, cfg: QFormerConfig, index: int, encoder_width: int, text_ffn: bool = True) -> None:
        super().__init__()
        args = (cfg.layer_norm_eps, cfg.attention_dropout, cfg.hidden_dropout)
        self.attention = AttentionBlock(cfg.hidden_size, cfg.num_heads, cfg.hidden_size, *args)
        self.has_cross_attention = cfg.has_cross_attention(index)
        if self.has_cross_attention:
            self.crossattention = AttentionBlock(cfg.hidden_size, cfg.num_heads, encoder_width, *args)
        self.has_text_ffn = text_ffn
        if text_ffn:
            self.intermediate = Intermediate(cfg)
            self.output = AttentionOutput(cfg.intermediate_size, cfg.hidden_size, cfg.layer_norm_eps, cfg.hidden_dropout)
        self.intermediate_query = Intermediate(cfg)
        self.output_query = AttentionOutput(
            cfg.intermediate_size, cfg.hidden_size, cfg.layer_norm_eps, cfg.hidden_dropout
        )

    def _text_ffn(self, x: torch.Tensor) -> torch.Tensor:
        if not self.has_text_ffn:
            raise RuntimeError("this Q-Former was built without text layers (BLIP-2 T5): it takes queries only")
        return self.output(self.intermediate(x), x)

    def _query_ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_query(self.intermediate_query(x), x)

    def forward(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        query_length: int,
        image_embeds: torch.Tensor | None,
        image_mask: torch.Tensor | None,
        past: KeyValue | None = None,
    ) -> tuple[torch.Tensor, KeyValue]:
        """``hidden`` = [queries (query_length); text]. Only the queries see the image."""
        attended, present = self.attention(hidden, mask, past=past)
        if query_length == 0:
            return self._text_ffn(attended), present
        queries = attended[:, :query_length]
        if self.has_cross_attention:
            if image_embeds is None:
                raise ValueError("the Q-Former's queries need image_embeds for cross-attention")
            queries, _ = self.crossattention(queries, image_mask, context=image_embeds)
        out = self._query_ffn(queries)
        if attended.shape[1] > query_length:
            out = torch.cat([out, self._text_ffn(attended[:, query_length:])], dim=1)
        return out, present
