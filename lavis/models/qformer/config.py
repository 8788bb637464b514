"""The Q-Former's typed config: BERT-base layout plus learned queries and image cross-attention."""

from __future__ import annotations

import dataclasses

from lavis.common.errors import ConfigError

# bert-base-uncased's 30,522 WordPiece tokens plus the ``[DEC]`` BOS token the ITG decoder starts with.
BERT_VOCAB_SIZE = 30522
QFORMER_VOCAB_SIZE = BERT_VOCAB_SIZE + 1


@dataclasses.dataclass
class QFormerConfig:
    """``model.qformer``. Defaults are BLIP-2's full size (bert-base-uncased, 32 queries)."""

    num_query_tokens: int = 32
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    # Layer i cross-attends to the image when i % cross_attention_freq == 0.
    cross_attention_freq: int = 2
    vocab_size: int = QFORMER_VOCAB_SIZE
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    hidden_act: str = "gelu"
    initializer_range: float = 0.02
    # BERT weights to start from (local folder or hub id), read only when the model has no
    # ``checkpoint`` (that replaces them); None = random init.
    pretrained: str | None = "bert-base-uncased"
    # WordPiece tokenizer folder or hub id (``[DEC]`` is added as BOS on load).
    tokenizer: str = "bert-base-uncased"

    def validate(self) -> None:
        for name in ("num_query_tokens", "hidden_size", "num_layers", "num_heads", "intermediate_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"'{name}' must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"'hidden_size' ({self.hidden_size}) must be divisible by 'num_heads' ({self.num_heads})"
            )
        if self.cross_attention_freq < 1:
            raise ConfigError(f"'cross_attention_freq' must be >= 1, got {self.cross_attention_freq}")
        if self.vocab_size < 2:
            raise ConfigError(f"'vocab_size' must be >= 2, got {self.vocab_size}")

    def has_cross_attention(self, layer: int) -> bool:
        return layer % self.cross_attention_freq == 0
