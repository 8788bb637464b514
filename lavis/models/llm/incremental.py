"""Token-by-token decoding of rows that join and leave a running batch: what a serving loop steps.

``transformers``' ``generate`` decodes a fixed batch from its first token to its last. A server
that streams tokens and lets requests join and leave at every step needs the pieces instead:
``start`` (read new prompts; the logits of their first token) and ``step`` (feed one token per row;
the logits of the next), over a :class:`DecoderRows` state whose rows can be concatenated,
selected and reordered between steps.

Rows decoded together have histories of different lengths. Their self-attention caches are
padded on the left (the newest token of every row sits in the last column) and a mask marks the
padding, which no attention ever sees: decoder-only LMs get explicit position ids (each row's own
count of real tokens, as ``generate`` computes them for a left-padded batch), and T5's relative
position bias depends only on distances, which left padding does not change. Encoder outputs
(T5) are padded on the right and masked. So a row's tokens do not depend on its neighbours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from lavis.models.llm.beam_cache import beam_shared_cache, cache_argument
from lavis.models.llm.bridge import LanguageBridge
from lavis.models.llm.seq2seq import Seq2SeqBridge


@dataclasses.dataclass
class DecoderRows:
    """The decoder state of rows decoded together (one row per sequence being extended)."""

    cache: Any  # transformers DynamicCache (decoder-only) or EncoderDecoderCache (T5)
    mask: torch.Tensor  # (B, L) 1 where the self-attention cache holds a real token, 0 for left padding
    positions: torch.Tensor | None = None  # decoder-only: (B,) position id of each row's next token
    encoder: torch.Tensor | None = None  # T5: (B, S, D) encoder output, padded on the right
    encoder_mask: torch.Tensor | None = None  # T5: (B, S)
    pending: torch.Tensor | None = None  # rows that joined without a step yet: the token each is fed first

    def __len__(self) -> int:
        return self.mask.shape[0]


def _self_layers(cache: Any) -> list[Any]:
    return list(getattr(cache, "self_attention_cache", cache).layers)


def _cross_layers(cache: Any) -> list[Any]:
    cross = getattr(cache, "cross_attention_cache", None)
    return list(cross.layers) if cross is not None else []


def _pad(x: torch.Tensor, length: int, dim: int, left: bool) -> torch.Tensor:
    missing = length - x.shape[dim]
    if missing == 0:
        return x
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + ([missing, 0] if left else [0, missing])
    return F.pad(x, pad)


def concat_rows(parts: Sequence[DecoderRows]) -> DecoderRows:
    """One state holding the rows of ``parts`` in order (caches padded to a common length)."""
    parts = [p for p in parts if len(p)]
    if len(parts) == 1:
        return parts[0]
    length = max(p.mask.shape[1] for p in parts)
    first = parts[0]
    for i, layer in enumerate(_self_layers(first.cache)):
        others = [_self_kv(p, i, layer.keys) for p in parts]
        layer.keys = torch.cat([_pad(k, length, 2, left=True) for k, _ in others])
        layer.values = torch.cat([_pad(v, length, 2, left=True) for _, v in others])
    mask = torch.cat([_pad(p.mask, length, 1, left=True) for p in parts])
    positions = encoder = encoder_mask = None
    if first.positions is not None:
        positions = torch.cat([p.positions for p in parts])
    if first.encoder is not None:
        source = max(p.encoder.shape[1] for p in parts)
        for i, layer in enumerate(_cross_layers(first.cache)):
            others = [_cross_layers(p.cache)[i] for p in parts]
            layer.keys = torch.cat([_pad(o.keys, source, 2, left=False) for o in others])
            layer.values = torch.cat([_pad(o.values, source, 2, left=False) for o in others])
        encoder = torch.cat([_pad(p.encoder, source, 1, left=False) for p in parts])
        encoder_mask = torch.cat([_pad(p.encoder_mask, source, 1, left=False) for p in parts])
    return DecoderRows(first.cache, mask, positions, encoder, encoder_mask)


def stack_encoded(parts: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder outputs and masks ((1, S_i, D), (1, S_i)) of rows started apart, as one batch padded on the right."""
    length = max(mask.shape[1] for _, mask in parts)
    return (torch.cat([_pad(hidden, length, 1, left=False) for hidden, _ in parts]),
            torch.cat([_pad(mask, length, 1, left=False) for _, mask in parts]))


def _self_kv(part: DecoderRows, layer: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A part's self-attention keys and values of one layer; empty ones (rows that have not been
    fed a token yet) shaped like ``like`` with no positions."""
    layers = _self_layers(part.cache)
    if layer < len(layers) and getattr(layers[layer], "keys", None) is not None and layers[layer].keys.numel():
        return layers[layer].keys, layers[layer].values
    empty = like.new_zeros((len(part), like.shape[1], 0, like.shape[3]))
    return empty, empty


def select_rows(rows: DecoderRows, index: torch.Tensor, cross_too: bool = True) -> DecoderRows:
    """The rows ``index`` (in that order, repeats allowed), padding no row needs any more dropped.

    ``cross_too=False``: every row is replaced by a row of the same request (a beam reorder), whose
    encoder side is identical, so only the self-attention side is gathered.
    """
    mask = rows.mask.index_select(0, index)
    start = int((mask.sum(0) > 0).int().argmax()) if mask.numel() else 0  # first column any row still uses
    for layer in _self_layers(rows.cache):
        layer.keys = layer.keys.index_select(0, index)[:, :, start:]
        layer.values = layer.values.index_select(0, index)[:, :, start:]
    positions = rows.positions.index_select(0, index) if rows.positions is not None else None
    encoder, encoder_mask = rows.encoder, rows.encoder_mask
    if encoder is not None and cross_too:
        encoder_mask = encoder_mask.index_select(0, index)
        end = int(encoder_mask.sum(0).nonzero().max()) + 1 if encoder_mask.any() else 0  # last column in use
        encoder_mask = encoder_mask[:, :end]
        encoder = encoder.index_select(0, index)[:, :end]
        for layer in _cross_layers(rows.cache):
            layer.keys = layer.keys.index_select(0, index)[:, :, :end]
            layer.values = layer.values.index_select(0, index)[:, :, :end]
    return DecoderRows(rows.cache, mask[:, start:], positions, encoder, encoder_mask)


class IncrementalDecoder:
    """``start`` new prompts, then ``step`` one token per row; logits come back as float32 (B, V)."""

    def __init__(self, bridge: LanguageBridge) -> None:
        self.bridge = bridge
        self.model = bridge.model
        self.cache_keyword = cache_argument(self.model)

    @property
    def initial_ids(self) -> list[int]:
        """The ids ``generate`` puts before the new tokens (its ``input_ids`` for logits processors)."""
        return []

    def start(self, prefix: torch.Tensor, prompts: Sequence[str]) -> tuple[DecoderRows, torch.Tensor | None]:
        """The new rows and the logits of their first token; or (rows whose ``pending`` tokens are fed
        at the next shared ``step``, None) when the LM can start rows inside that step."""
        raise NotImplementedError  # each LM kind reads its prompt its own way

    def step(self, rows: DecoderRows, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class CausalDecoder(IncrementalDecoder):
    """Decoder-only LMs: [queries; BOS + instruction] is read at once, left-padded."""

    def start(self, prefix: torch.Tensor, prompts: Sequence[str]) -> tuple[DecoderRows, torch.Tensor]:
        from transformers.cache_utils import DynamicCache

        bridge = self.bridge
        embeds, mask, _ = bridge._sequence(prefix, bridge._prompt(prompts), None, "left")
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as generate numbers a padded batch
        cache = DynamicCache()
        with bridge.precision():
            out = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                             **{cache_argument(self.model): cache})
        rows = DecoderRows(cache, mask, positions=mask.long().sum(-1))
        return rows, out.logits[:, -1].float()

    def step(self, rows: DecoderRows, tokens: torch.Tensor) -> torch.Tensor:
        rows.mask = torch.cat([rows.mask, torch.ones_like(rows.mask[:, :1])], dim=1)
        with self.bridge.precision():
            out = self.model(input_ids=tokens[:, None], attention_mask=rows.mask, position_ids=rows.positions[:, None],
                             use_cache=True, **{self.cache_keyword: rows.cache})
        rows.positions = rows.positions + 1
        return out.logits[:, -1].float()


class Seq2SeqDecoder(IncrementalDecoder):
    """Encoder-decoder LMs (T5): the encoder reads [queries; instruction]; the decoder starts from
    ``decoder_start_token_id`` and its cross-attention keys/values are projected once per row."""

    def __init__(self, bridge: LanguageBridge) -> None:
        super().__init__(bridge)
        self._encoder_mask: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)  # 2D, and as step passes it

    @property
    def initial_ids(self) -> list[int]:
        return [self._start_id]

    @property
    def _start_id(self) -> int:
        start = getattr(self.model.config, "decoder_start_token_id", None)
        return int(start if start is not None else self.bridge.tokenizer.pad_token_id)

    def start(self, prefix: torch.Tensor, prompts: Sequence[str]) -> tuple[DecoderRows, torch.Tensor | None]:
        """The encoder, and each layer's cross-attention keys/values projected here (as the first
        decoder step would), so that the rows' first step, the start token, is part of the next
        shared step instead of a decoder call of its own."""
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        embeds, encoder_mask = self.bridge._encoder_inputs(prefix, prompts)
        with self.bridge.precision():
            encoded = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=encoder_mask).last_hidden_state
            cache = beam_shared_cache(self.model, encoded, 1)
        start = torch.full((len(prompts),), self._start_id, dtype=torch.long, device=encoded.device)
        if cache is None:  # a layout beam_cache does not know: the first step runs here
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            rows = DecoderRows(cache, encoder_mask.new_zeros((len(prompts), 0)), encoder=encoded,
                               encoder_mask=encoder_mask)
            return rows, self.step(rows, start)
        rows = DecoderRows(cache, encoder_mask.new_zeros((len(prompts), 0)), encoder=encoded, encoder_mask=encoder_mask,
                           pending=start)
        return rows, None

    def step(self, rows: DecoderRows, tokens: torch.Tensor) -> torch.Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        rows.mask = torch.cat([rows.mask, torch.ones_like(rows.encoder_mask[:, :1])], dim=1)
        padded = not bool(rows.mask.all())  # without padding, the plain causal mask (cheaper to build)
        if self._encoder_mask[0] is not rows.encoder_mask:  # the same until rows join or leave
            self._encoder_mask = (rows.encoder_mask, self._one_query_mask(rows.encoder_mask))
        with self.bridge.precision():
            out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=rows.encoder),
                             attention_mask=self._encoder_mask[1],
                             decoder_input_ids=tokens[:, None],
                             decoder_attention_mask=self._one_query_mask(rows.mask) if padded else None,
                             use_cache=True, **{self.cache_keyword: rows.cache})
        return out.logits[:, -1].float()

    def _one_query_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """``mask`` (B, L) as the 4D mask that SDPA attention of one new token takes, (B, 1, 1, L),
        True where it may attend. transformers passes a 4D mask through as it is; building it from
        the 2D one on every step (mask functions over every position) cost a tenth of a decoding
        step at the demo's size. Other attention kinds get the 2D mask to build their own."""
        if getattr(self.model.config, "_attn_implementation", None) != "sdpa":
            return mask
        return mask[:, None, None, :].bool()


def incremental_decoder(bridge: LanguageBridge) -> IncrementalDecoder:
    """The stepper for ``bridge``'s kind of LM."""
    return Seq2SeqDecoder(bridge) if isinstance(bridge, Seq2SeqBridge) else CausalDecoder(bridge)


def logits_processors(bridge: LanguageBridge, options: Any, initial_length: int, min_new_tokens: bool = True) -> list[Any]:
    """The logits processors ``generate`` applies for ``options`` (a ``GenerationOptions``), in its
    order: repetition penalty, min new tokens, then for sampling temperature, top-k (the model's
    generation config, else transformers' 50) and top-p. Call each as ``scores = p(ids, scores)``
    (a plain list: ``LogitsProcessorList`` inspects signatures on every call). ``min_new_tokens=False``
    leaves out the EOS ban before ``min_new_tokens`` (for a caller that bans EOS itself)."""
    from transformers.generation.logits_process import (
        MinNewTokensLengthLogitsProcessor,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    config = bridge.generation_config(options)
    processors: list[Any] = []
    if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(penalty=config.repetition_penalty))
    if min_new_tokens and config.min_new_tokens and config.eos_token_id is not None:
        processors.append(MinNewTokensLengthLogitsProcessor(initial_length, config.min_new_tokens, config.eos_token_id))
    if config.do_sample:
        keep = 1  # sampling here is never beam sampling
        if config.temperature is not None and config.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(config.temperature))
        top_k = getattr(bridge.model.generation_config, "top_k", None)
        top_k = 50 if top_k is None else top_k
        if top_k:
            processors.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=keep))
        if config.top_p is not None and config.top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p=config.top_p, min_tokens_to_keep=keep))
    return processors
