"""What every frozen-LLM adapter shares: tokenising with a side-aware truncation, generation
options, decoding, and the log-likelihood of target tokens.

A bridge is a plain object (not an ``nn.Module``): the model registers the LLM under its LAVIS
name (``t5_model`` / ``llm_model``) and hands the bridge a reference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from lavis.common.errors import ConfigError
from lavis.models.llm.loading import precision

Side = Literal["left", "right"]
IGNORE = -100


@dataclasses.dataclass
class GenerationOptions:
    """The generation contract's knobs; ``length_penalty=None`` = the bridge's default."""

    num_beams: int = 5
    max_new_tokens: int = 40
    min_new_tokens: int = 5
    length_penalty: float | None = None
    repetition_penalty: float = 1.0
    use_nucleus_sampling: bool = False
    top_p: float = 0.9
    temperature: float = 1.0
    num_return_sequences: int = 1

    def validate(self) -> None:
        """Values transformers would reject mid-run or take silently (``from_mapping`` calls this)."""
        for name, low in (("num_beams", 1), ("max_new_tokens", 1), ("min_new_tokens", 0), ("num_return_sequences", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"'{name}' must be an integer >= {low}, got {getattr(self, name)}")
        if not self.temperature >= 0 or (self.use_nucleus_sampling and self.temperature == 0):
            low = "> 0 with use_nucleus_sampling (or sample nothing: use_nucleus_sampling=false)" \
                if self.use_nucleus_sampling else ">= 0"
            raise ConfigError(f"'temperature' must be {low}, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"'top_p' must be in (0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise ConfigError(f"'repetition_penalty' must be > 0 (1: none), got {self.repetition_penalty}")


def pack(mask: torch.Tensor, side: Side) -> torch.Tensor:
    """Per-row permutation moving real positions together, padding to ``side``; order is kept."""
    key = mask.to(torch.int8) if side == "left" else (~mask.bool()).to(torch.int8)
    return torch.argsort(key, dim=1, stable=True)


def gather_rows(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``x[b, order[b]]`` for (B, L) and (B, L, D) tensors."""
    if x.dim() == 3:
        return x.gather(1, order[..., None].expand(-1, -1, x.shape[-1]))
    return x.gather(1, order)


def sequence_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of log p(label) over the positions whose label is not ``IGNORE``; logits align with labels."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    keep = labels != IGNORE
    picked = log_probs.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return (picked * keep).sum(dim=-1)


class LanguageBridge:
    """Feeds a soft prefix (projected query outputs) plus text to a frozen transformers LM."""

    default_length_penalty: float = 1.0

    def __init__(self, model, tokenizer, max_input: int, max_output: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_input = max_input
        self.max_output = max_output

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def precision(self):
        return precision(self.device.type, self.dtype)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    def tokenize(
        self, texts: Sequence[str], max_length: int, side: Side, special_tokens: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded (ids, mask); over-long texts lose tokens on ``side`` (special tokens kept)."""
        self.tokenizer.truncation_side = side
        enc = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=max_length,
            add_special_tokens=special_tokens,
            padding_side="right",
            return_tensors="pt",
        )
        return enc.input_ids.to(self.device), enc.attention_mask.to(self.device)

    def generation_config(self, options: GenerationOptions):
        from transformers import GenerationConfig

        length_penalty = options.length_penalty
        if length_penalty is None:
            length_penalty = self.default_length_penalty
        kwargs = dict(
            max_new_tokens=options.max_new_tokens,
            min_new_tokens=min(options.min_new_tokens, options.max_new_tokens),
            num_beams=options.num_beams,
            num_return_sequences=options.num_return_sequences,
            repetition_penalty=options.repetition_penalty,
            do_sample=options.use_nucleus_sampling,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        start = getattr(self.model.config, "decoder_start_token_id", None)
        if start is not None:
            kwargs["decoder_start_token_id"] = start
        if options.num_beams > 1:
            kwargs["length_penalty"] = length_penalty
        if options.use_nucleus_sampling:
            kwargs.update(top_p=options.top_p, temperature=options.temperature)
        return GenerationConfig(**kwargs)

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    # ---- what each kind of LM implements ---------------------------------------------------
    def loss(self, prefix: torch.Tensor, prompts: Sequence[str], answers: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def generate_ids(self, prefix: torch.Tensor, prompts: Sequence[str], options: GenerationOptions) -> torch.Tensor:
        """Generated token ids (B * num_return_sequences, length); new tokens only for decoder-only LMs."""
        raise NotImplementedError

    def generate(self, prefix: torch.Tensor, prompts: Sequence[str], options: GenerationOptions) -> list[str]:
        return self.decode(self.generate_ids(prefix, prompts, options))

    def score_targets(
        self, prefix: torch.Tensor, prompts: Sequence[str], targets: Sequence[Sequence[str]],
        encoded: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(B, C) summed log-likelihood (EOS included) of sample b's own candidates ``targets[b]``;
        every sample has the same number C of candidates. ``encoded``: an encoder-decoder's encoder
        output for [prefix; prompts] and its mask, when the caller has them from generation (the
        encoder is not run again); decoder-only LMs read their prompt with the candidates anyway."""
        raise NotImplementedError

    def score(self, prefix: torch.Tensor, prompts: Sequence[str], candidates: Sequence[str]) -> torch.Tensor:
        """(B, C) summed log-likelihood of each candidate answer (EOS included) per sample."""
        return self.score_targets(prefix, prompts, [list(candidates)] * prefix.shape[0])


def flatten_targets(targets: Sequence[Sequence[str]], batch: int) -> tuple[list[str], int]:
    """Row-major candidates of a (batch, C) target grid, and C; ragged grids are refused."""
    if len(targets) != batch:
        raise ValueError(f"got candidates for {len(targets)} samples, expected {batch}")
    count = len(targets[0]) if targets else 0
    if count == 0 or any(len(row) != count for row in targets):
        raise ValueError("every sample needs the same, non-zero number of candidates")
    return [text for row in targets for text in row], count
