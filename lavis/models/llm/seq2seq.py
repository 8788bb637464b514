"""Encoder-decoder LMs (FlanT5): the encoder reads [queries; instruction], the decoder the answer."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lavis.models.llm.beam_cache import beam_shared_cache, cache_argument
from lavis.models.llm.bridge import (
    IGNORE,
    GenerationOptions,
    LanguageBridge,
    flatten_targets,
    sequence_log_likelihood,
)


class Seq2SeqBridge(LanguageBridge):
    # LAVIS's T5 VQA default: a negative penalty favours short answers in beam search.
    default_length_penalty = -1.0

    def _encoder_inputs(self, prefix: torch.Tensor, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenize(prompts, self.max_input, "left")
        embeds = torch.cat([prefix.to(self.dtype), self.embed(ids)], dim=1)
        prefix_mask = torch.ones(prefix.shape[:2], dtype=mask.dtype, device=mask.device)
        return embeds, torch.cat([prefix_mask, mask], dim=1)

    def _targets(self, answers: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenize(answers, self.max_output, "right")
        return ids.masked_fill(mask == 0, IGNORE), mask

    def loss(self, prefix: torch.Tensor, prompts: Sequence[str], answers: Sequence[str]) -> torch.Tensor:
        embeds, mask = self._encoder_inputs(prefix, prompts)
        labels, label_mask = self._targets(answers)
        with self.precision():
            out = self.model(
                inputs_embeds=embeds, attention_mask=mask, labels=labels, decoder_attention_mask=label_mask
            )
        return out.loss.float()

    @torch.no_grad()
    def generate_ids(self, prefix: torch.Tensor, prompts: Sequence[str], options: GenerationOptions) -> torch.Tensor:
        """Beam search runs the encoder once per sample and projects its cross-attention keys and
        values once per sample, not per beam (:mod:`lavis.models.llm.beam_cache`)."""
        embeds, mask = self._encoder_inputs(prefix, prompts)
        config = self.generation_config(options)
        with self.precision():
            if config.num_beams > 1 and not config.do_sample:
                from transformers.modeling_outputs import BaseModelOutput

                encoded = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
                cache = beam_shared_cache(self.model, encoded, config.num_beams)
                if cache is not None:
                    return self.model.generate(
                        encoder_outputs=BaseModelOutput(last_hidden_state=encoded), attention_mask=mask,
                        generation_config=config, **{cache_argument(self.model): cache},
                    )
            return self.model.generate(inputs_embeds=embeds, attention_mask=mask, generation_config=config)

    @torch.no_grad()
    def score_targets(
        self, prefix: torch.Tensor, prompts: Sequence[str], targets: Sequence[Sequence[str]],
        encoded: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        batch = prefix.shape[0]
        flat, count = flatten_targets(targets, batch)
        labels, label_mask = self._targets(flat)
        with self.precision():
            # the encoder runs once per sample; its output is shared by that sample's candidates
            if encoded is None:
                embeds, mask = self._encoder_inputs(prefix, prompts)
                hidden = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            else:
                hidden, mask = encoded
            logits = self.model(
                encoder_outputs=BaseModelOutput(last_hidden_state=hidden.repeat_interleave(count, dim=0)),
                attention_mask=mask.repeat_interleave(count, dim=0),
                labels=labels,
                decoder_attention_mask=label_mask,
            ).logits
        return sequence_log_likelihood(logits, labels).view(batch, count)
