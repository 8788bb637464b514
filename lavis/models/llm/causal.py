"""Decoder-only LMs (Vicuna / any LLaMA-family ``AutoModelForCausalLM``).

The sequence is [queries; BOS + instruction; answer + EOS] with the loss on the answer only.
Each part is tokenised on its own (as InstructBLIP does), then real tokens are packed together
so padding sits at one end: the right for training and scoring, the left for generation (where
new tokens are appended on the right).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lavis.models.llm.bridge import (
    IGNORE,
    GenerationOptions,
    LanguageBridge,
    Side,
    flatten_targets,
    gather_rows,
    pack,
    sequence_log_likelihood,
)


class CausalBridge(LanguageBridge):
    default_length_penalty = 0.0

    def __init__(self, model, tokenizer, max_input: int, max_output: int, bos_token: str | None = None) -> None:
        super().__init__(model, tokenizer, max_input, max_output)
        self.bos_id = tokenizer.bos_token_id if bos_token is None else tokenizer.convert_tokens_to_ids(bos_token)
        if tokenizer.eos_token_id is None:
            raise ValueError("the language model's tokenizer has no EOS token; answers could never end")

    def _prompt(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """BOS + instruction, truncated on the left to ``max_input`` tokens in all."""
        budget = self.max_input - (self.bos_id is not None)
        ids, mask = self.tokenize(prompts, budget, "left", special_tokens=False)
        if self.bos_id is None:
            return ids, mask
        bos = torch.full((ids.shape[0], 1), self.bos_id, dtype=ids.dtype, device=ids.device)
        return torch.cat([bos, ids], dim=1), torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)

    def _answer(self, answers: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Answer + EOS, truncated on the right to ``max_output`` tokens in all."""
        ids, mask = self.tokenize(answers, self.max_output - 1, "right", special_tokens=False)
        ids = torch.cat([ids, torch.full_like(ids[:, :1], self.tokenizer.pad_token_id)], dim=1)
        mask = torch.cat([mask, torch.zeros_like(mask[:, :1])], dim=1)
        ends = mask.sum(dim=1, keepdim=True)
        ids = ids.scatter(1, ends, self.tokenizer.eos_token_id)
        return ids, mask.scatter(1, ends, 1)

    def _sequence(
        self,
        prefix: torch.Tensor,
        prompt: tuple[torch.Tensor, torch.Tensor],
        answer: tuple[torch.Tensor, torch.Tensor] | None,
        side: Side,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs_embeds, attention_mask, labels) of [prefix; prompt; answer], packed to ``side``."""
        ids, mask = prompt
        labels = torch.full_like(ids, IGNORE)
        if answer is not None:
            labels = torch.cat([labels, answer[0].masked_fill(answer[1] == 0, IGNORE)], dim=1)
            ids, mask = torch.cat([ids, answer[0]], dim=1), torch.cat([mask, answer[1]], dim=1)
        prefix_mask = torch.ones(prefix.shape[:2], dtype=mask.dtype, device=mask.device)
        embeds = torch.cat([prefix.to(self.dtype), self.embed(ids)], dim=1)
        mask = torch.cat([prefix_mask, mask], dim=1)
        labels = torch.cat([torch.full_like(prefix_mask, IGNORE), labels], dim=1)
        order = pack(mask, side)
        return gather_rows(embeds, order), gather_rows(mask, order), gather_rows(labels, order)

    def loss(self, prefix: torch.Tensor, prompts: Sequence[str], answers: Sequence[str]) -> torch.Tensor:
        embeds, mask, labels = self._sequence(prefix, self._prompt(prompts), self._answer(answers), "right")
        with self.precision():
            out = self.model(inputs_embeds=embeds, attention_mask=mask, labels=labels)
        return out.loss.float()

    @torch.no_grad()
    def generate_ids(self, prefix: torch.Tensor, prompts: Sequence[str], options: GenerationOptions) -> torch.Tensor:
        embeds, mask, _ = self._sequence(prefix, self._prompt(prompts), None, "left")
        with self.precision():
            ids = self.model.generate(
                inputs_embeds=embeds, attention_mask=mask, generation_config=self.generation_config(options)
            )
        return ids  # with inputs_embeds only, generate returns just the new tokens

    @torch.no_grad()
    def score_targets(
        self, prefix: torch.Tensor, prompts: Sequence[str], targets: Sequence[Sequence[str]],
        encoded: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        batch = prefix.shape[0]
        flat, count = flatten_targets(targets, batch)
        prompt_ids, prompt_mask = self._prompt(prompts)
        embeds, mask, labels = self._sequence(
            prefix.repeat_interleave(count, dim=0),
            (prompt_ids.repeat_interleave(count, dim=0), prompt_mask.repeat_interleave(count, dim=0)),
            self._answer(flat),
            "right",
        )
        with self.precision():
            logits = self.model(inputs_embeds=embeds, attention_mask=mask).logits
        return sequence_log_likelihood(logits[:, :-1], labels[:, 1:]).view(batch, count)
