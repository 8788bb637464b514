"""The Q-Former: a BERT whose input is [learned queries; text], whose queries cross-attend to the
frozen image features, with BERT's LM head for the image-grounded text decoder (ITG).

Layout and parameter names follow LAVIS (``Qformer.bert.*``, ``Qformer.cls.predictions.*``) so
BLIP-2 / InstructBLIP / CLOVER checkpoints load by name. Differences from BERT: no token-type
embeddings; queries get no position embeddings; a separate feed-forward for query positions.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from lavis.models.qformer.attention import KeyValue
from lavis.models.qformer.config import QFormerConfig
from lavis.models.qformer.layer import QFormerLayer, activation
from lavis.models.qformer.masks import image_attention_mask, self_attention_mask


@dataclasses.dataclass
class QFormerOutput:
    last_hidden_state: torch.Tensor
    # Per layer, the self-attention key/value of every position seen (queries first); reused as
    # the prefix of a later text-only pass (ITG reads the queries through this cache).
    past_key_values: list[KeyValue] | None = None


class QFormerEmbeddings(nn.Module):
    def __init__(self, cfg: QFormerConfig, text: bool) -> None:
        super().__init__()
        self.has_text = text
        if text:
            self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=0)
            self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, input_ids: torch.Tensor | None, query_embeds: torch.Tensor | None) -> torch.Tensor:
        parts = [] if query_embeds is None else [query_embeds]
        if input_ids is not None:
            if not self.has_text:
                raise RuntimeError("this Q-Former was built without text embeddings (BLIP-2 T5): it takes queries only")
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            parts.append(self.word_embeddings(input_ids) + self.position_embeddings(positions))
        if not parts:
            raise ValueError("the Q-Former needs query_embeds, input_ids or both")
        hidden = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return self.dropout(self.LayerNorm(hidden))


class QFormerEncoder(nn.Module):
    def __init__(self, cfg: QFormerConfig, encoder_width: int, text: bool) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            QFormerLayer(cfg, index, encoder_width, text_ffn=text) for index in range(cfg.num_layers)
        )


class QFormerModel(nn.Module):
    """LAVIS's ``Qformer.bert``: embeddings + encoder layers, no pooler."""

    def __init__(self, cfg: QFormerConfig, encoder_width: int, text: bool = True) -> None:
        super().__init__()
        self.config = cfg
        self.embeddings = QFormerEmbeddings(cfg, text)
        self.encoder = QFormerEncoder(cfg, encoder_width, text)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        query_embeds: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        causal: bool = False,
        past_key_values: list[KeyValue] | None = None,
        use_cache: bool = False,
    ) -> QFormerOutput:
        """Encode [queries; text].

        ``text_mask`` (B, T) marks real text tokens (1) versus padding (0); queries are always
        visible. ``causal=True`` is the ITG decoder: queries see only queries, text sees all
        queries (including the cached ones in ``past_key_values``) and earlier text.
        """
        query_length = 0 if query_embeds is None else query_embeds.shape[1]
        past_length = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        hidden = self.embeddings(input_ids, query_embeds)
        mask = self_attention_mask(
            hidden.shape[0], query_length, hidden.shape[1] - query_length, text_mask, past_length, causal, hidden.device
        )
        cross_mask = image_attention_mask(image_mask)
        presents: list[KeyValue] = []
        for index, layer in enumerate(self.encoder.layer):
            past = None if past_key_values is None else past_key_values[index]
            hidden, present = layer(hidden, mask, query_length, image_embeds, cross_mask, past=past)
            if use_cache:
                presents.append(present)
        return QFormerOutput(hidden, presents if use_cache else None)


class PredictionTransform(nn.Module):
    def __init__(self, cfg: QFormerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = activation(cfg.hidden_act)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class LMPrediction(nn.Module):
    """``cls.predictions``: transform, then the decoder tied to the word embeddings, plus a bias."""

    def __init__(self, cfg: QFormerConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.transform = PredictionTransform(cfg)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.decoder.weight = word_embeddings.weight
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.decoder.bias = self.bias  # one tensor under both LAVIS names

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden))


class LMHead(nn.Module):
    def __init__(self, cfg: QFormerConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.predictions = LMPrediction(cfg, word_embeddings)


class QFormer(nn.Module):
    """LAVIS's ``Qformer``: ``bert`` plus, for stage 1, the ITG head ``cls``.

    ``text=False`` builds the queries-only variant of BLIP-2 T5 (no word/position embeddings, no
    text feed-forward); ``lm_head=False`` leaves out ``cls`` (stage 2 never decodes with it).
    """

    def __init__(self, cfg: QFormerConfig, encoder_width: int, text: bool = True, lm_head: bool = False) -> None:
        super().__init__()
        if lm_head and not text:
            raise ValueError("the Q-Former's LM head needs the text embeddings (text=True)")
        self.config = cfg
        self.bert = QFormerModel(cfg, encoder_width, text)
        self.cls = LMHead(cfg, self.bert.embeddings.word_embeddings) if lm_head else None
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's init: normal(0, initializer_range) weights, zero biases, unit LayerNorms."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, LMPrediction):
            nn.init.zeros_(module.bias)

    def lm_loss(
        self,
        input_ids: torch.Tensor,
        text_mask: torch.Tensor,
        past_key_values: list[KeyValue],
        label_smoothing: float = 0.1,
    ) -> torch.Tensor:
        """Next-token loss of the text decoder reading the cached queries; padding is ignored."""
        if self.cls is None:
            raise RuntimeError("this Q-Former has no LM head (cls): build it with lm_head=True")
        out = self.bert(input_ids, text_mask, causal=True, past_key_values=past_key_values)
        logits = self.cls.predictions(out.last_hidden_state[:, :-1])
        labels = input_ids[:, 1:].masked_fill(~text_mask[:, 1:].bool(), -100)
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), label_smoothing=label_smoothing
        )
