"""Stage 2: the Q-Former's query outputs, projected to the LLM width, prefix a frozen LLM.

Instruction-aware models (InstructBLIP / CLOVER) also feed the formatted instruction to the
Q-Former, where queries and instruction tokens attend to each other; only the query outputs go
on to the LLM. Trainable: Q-Former, query tokens, projection. Frozen: image encoder,
``ln_vision``, LLM (in ``llm.dtype``, bf16 by default).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lavis.common.conversation import ConversationContract, turns_of
from lavis.common.errors import ConfigError, DataError
from lavis.models.blip2.base import Blip2Base, Blip2Config
from lavis.models.llm import CausalBridge, GenerationOptions, LanguageBridge, LLMConfig, Seq2SeqBridge
from lavis.models.llm.loading import load_llm, load_llm_tokenizer
from lavis.models.llm.verdict import verdict_pair

logger = logging.getLogger(__name__)
# Most embedding rows a checkpoint's LLM may hold beyond ours: tokens added to the tokenizer (LAVIS's
# InstructBLIP Vicuna adds [PAD], one row); more means another LLM, reported as a shape mismatch.
MAX_ADDED_TOKENS = 8


@dataclasses.dataclass
class Blip2LLMConfig(Blip2Config):
    llm: LLMConfig = dataclasses.field(default_factory=lambda: LLMConfig(name_or_path="google/flan-t5-xl"))
    # Instruction template; "{}" receives samples["text_input"] (e.g. "Question: {} Short answer:").
    prompt: str = "{}"
    max_txt_len: int = 128  # instruction tokens (Q-Former and LLM), truncated on the left
    max_output_txt_len: int = 256  # answer tokens, truncated on the right
    # How the model is instruction-tuned (lavis.common.conversation): single questions (the default,
    # as CLOVER's and LAVIS's releases), or conversations folded in a named history format.
    conversation: ConversationContract = dataclasses.field(default_factory=ConversationContract)

    def validate(self) -> None:
        super().validate()
        try:
            self.prompt.format("question")
        except (IndexError, KeyError, ValueError) as err:
            raise ConfigError(f"'prompt' must be a template with at most one '{{}}', got {self.prompt!r} ({err})") from None
        if self.max_txt_len < 2 or self.max_output_txt_len < 2:
            raise ConfigError("'max_txt_len' and 'max_output_txt_len' must be >= 2")


class Blip2LLMBase(Blip2Base):
    """Subclasses pick the LLM kind, the LAVIS attribute names and whether the Q-Former reads text."""

    Config: ClassVar[type] = Blip2LLMConfig
    QFORMER_TRUNCATION: ClassVar[str] = "left"
    LLM_KIND: ClassVar[str] = "seq2seq"
    LLM_ATTR: ClassVar[str] = "t5_model"
    PROJ_ATTR: ClassVar[str] = "t5_proj"

    def __init__(self, cfg: Blip2LLMConfig, load_weights: bool = True, llm_config: Any | None = None) -> None:
        """``llm_config``: a transformers config to build the LLM from instead of the one at
        ``llm.name_or_path`` (with ``load_weights=False``: parameter counting without files)."""
        super().__init__(cfg, load_weights=load_weights)
        llm = load_llm(cfg.llm, self.LLM_KIND, load_weights=load_weights, arch_config=llm_config)
        setattr(self, self.LLM_ATTR, llm)
        width = llm.get_input_embeddings().weight.shape[1]
        setattr(self, self.PROJ_ATTR, nn.Linear(cfg.qformer.hidden_size, width))
        self._bridge: LanguageBridge | None = None
        # Embedding rows grown to load a checkpoint's added tokens (fit_to_checkpoint); a model folder
        # then keeps the LLM's embeddings, whose source no longer has those rows.
        self.added_llm_rows = 0

    @property
    def llm(self) -> nn.Module:
        return getattr(self, self.LLM_ATTR)

    @property
    def projection(self) -> nn.Linear:
        return getattr(self, self.PROJ_ATTR)

    @property
    def bridge(self) -> LanguageBridge:
        """The LLM adapter (tokenizer loaded on first use)."""
        if self._bridge is None:
            tokenizer = load_llm_tokenizer(self.cfg.llm)
            limits = (self.cfg.max_txt_len, self.cfg.max_output_txt_len)
            if self.LLM_KIND == "seq2seq":
                self._bridge = Seq2SeqBridge(self.llm, tokenizer, *limits)
            else:
                self._bridge = CausalBridge(self.llm, tokenizer, *limits, bos_token=self.cfg.llm.bos_token)
        return self._bridge

    def frozen_modules(self) -> list[nn.Module]:
        return [*super().frozen_modules(), self.llm]

    def fit_to_checkpoint(self, state: Mapping[str, torch.Tensor], source: str) -> None:
        """A full state dict of LAVIS's InstructBLIP Vicuna holds the LLM with one more embedding
        row (the ``[PAD]`` token LAVIS adds to the tokenizer): grow the LLM's input and output
        embeddings to that size, so every row loads and the model computes what LAVIS's did, the
        [PAD] logit included (never an input here: ours pads with the tokenizer's unk token)."""
        current = self.llm.get_input_embeddings().weight.shape[0]
        rows = next((state[name].shape[0] for name in self.llm_embedding_names() if name in state), current)
        if not 0 < rows - current <= MAX_ADDED_TOKENS:
            return
        logger.info("%s: the LLM holds %d embedding rows, this model %d (tokens LAVIS added, e.g. [PAD]); "
                    "growing the LLM's embeddings to load them", source, rows, current)
        self.llm.resize_token_embeddings(rows)
        self.llm.requires_grad_(False)
        self.added_llm_rows += rows - current

    def llm_embedding_names(self) -> list[str]:
        """State-dict names of the LLM's input embeddings and output head (tied names included)."""
        matrices = (self.llm.get_input_embeddings().weight, self.llm.get_output_embeddings().weight)
        return [name for name, value in self.state_dict(keep_vars=True).items() if any(value is m for m in matrices)]

    # ---- inputs -------------------------------------------------------------------------------
    @property
    def conversation(self) -> ConversationContract:
        return self.cfg.conversation

    def prompts(self, samples: Mapping[str, Any]) -> list[str]:
        """What the LLM reads: ``samples["prompt"]`` as given, else ``text_input`` through the
        config's template, with the earlier turns of ``samples["history"]`` folded in first when
        the model is tuned on conversations (``model.conversation``; training and serving share
        this fold). A single-turn model reads the question alone."""
        return self._prompts(samples, with_history=True)

    def qformer_prompts(self, samples: Mapping[str, Any]) -> list[str]:
        """What the Q-Former reads: the current question through the template, never the history,
        so the queries look for what is asked now; the LLM reads the conversation."""
        return self._prompts(samples, with_history=False)

    def _prompts(self, samples: Mapping[str, Any], with_history: bool) -> list[str]:
        batch = self._batch_size(samples)

        def per_sample(value: Any) -> list[Any]:
            return [value] * batch if isinstance(value, str) or value is None else list(value)

        if samples.get("prompt") is not None:
            prompts = per_sample(samples["prompt"])
        else:
            questions = per_sample(samples.get("text_input") or "")
            histories = per_sample(samples.get("history")) if with_history else [None] * len(questions)
            if len(histories) != len(questions):
                raise DataError(f"got {len(histories)} histories for {len(questions)} questions")
            prompts = [self.cfg.prompt.format(self.conversation.instruction(question, turns_of(history)))
                       for question, history in zip(questions, histories)]
        if len(prompts) != batch:
            raise DataError(f"got {len(prompts)} prompts/instructions for a batch of {batch} images")
        return prompts

    @staticmethod
    def _batch_size(samples: Mapping[str, Any]) -> int:
        for key in ("image_embeds", "image"):
            if samples.get(key) is not None:
                return len(samples[key])
        raise DataError("the batch has neither 'image' nor 'image_embeds'")

    def prefix(self, samples: Mapping[str, Any], prompts: Sequence[str]) -> torch.Tensor:
        """(B, num_queries, LLM width) projected query outputs; ``prompts`` is what the Q-Former
        reads (``qformer_prompts``)."""
        image_embeds = self.image_embeds(samples)
        if self.QFORMER_TEXT:
            input_ids, mask = self.tokenize(prompts, self.cfg.max_txt_len)
            out = self.query_output(image_embeds, input_ids, mask)
        else:
            out = self.query_output(image_embeds)
        return self.projection(out.last_hidden_state[:, : self.query_tokens.shape[1]])

    # ---- training -----------------------------------------------------------------------------
    def forward(self, samples: dict[str, Any]) -> dict[str, torch.Tensor]:
        if samples.get("text_output") is None:
            raise DataError("stage-2 training needs samples['text_output'] (the target answers)")
        prompts = self.prompts(samples)
        loss = self.bridge.loss(self.prefix(samples, self.qformer_prompts(samples)), prompts, samples["text_output"])
        return {"loss": loss}

    # ---- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        samples: Mapping[str, Any],
        num_beams: int = 5,
        max_new_tokens: int = 40,
        min_new_tokens: int = 5,
        length_penalty: float | None = None,
        repetition_penalty: float = 1.0,
        use_nucleus_sampling: bool = False,
        top_p: float = 0.9,
        temperature: float = 1.0,
        num_return_sequences: int = 1,
    ) -> list[str]:
        """Batched beam search (deterministic by default) or nucleus sampling; one string per
        sample and return sequence. ``length_penalty=None``: -1 for T5, 0 for decoder-only."""
        options = GenerationOptions(
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            length_penalty=length_penalty,
            repetition_penalty=repetition_penalty,
            use_nucleus_sampling=use_nucleus_sampling,
            top_p=top_p,
            temperature=temperature,
            num_return_sequences=num_return_sequences,
        )
        prompts = self.prompts(samples)
        return self.bridge.generate(self.prefix(samples, self.qformer_prompts(samples)), prompts, options)

    def predict_answers(self, samples: Mapping[str, Any], **generation: Any) -> list[str]:
        """Answers to ``samples["text_input"]`` (questions) through the prompt template."""
        return self.generate(samples, **generation)

    @torch.no_grad()
    def rank_answers(self, samples: Mapping[str, Any], candidates: Sequence[str] = ("yes", "no")) -> list[str]:
        """For closed questions: the candidate whose tokens (EOS included) are most likely."""
        if not candidates:
            raise ValueError("rank_answers needs at least one candidate")
        prompts = self.prompts(samples)
        scores = self.bridge.score(self.prefix(samples, self.qformer_prompts(samples)), prompts, list(candidates))
        return [candidates[i] for i in scores.argmax(dim=1).tolist()]

    @torch.no_grad()
    def yes_no_probabilities(self, samples: Mapping[str, Any], answers: Sequence[str] | None = None,
                             prefix: torch.Tensor | None = None,
                             encoded: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(B,) P(yes) from the model's likelihoods, for closed questions.

        ``answers`` (default: the model's greedy answers) fix everything but the verdict word: P(yes)
        is the softmax over the likelihoods of the answer saying yes and the same answer saying no
        (see :mod:`lavis.models.llm.verdict`), so it holds for a bare "yes", for "No, ..." and for
        answers that state an observation before the verdict ("The tissue is loose: no.").
        ``prefix``: the samples' query outputs (:meth:`prefix`) when the caller has them already;
        ``encoded``: an encoder-decoder LLM's reading of them too (``LanguageBridge.score_targets``).
        """
        if answers is None:
            answers = self.generate(samples, num_beams=1, max_new_tokens=self.cfg.max_output_txt_len, min_new_tokens=1)
        prompts = self.prompts(samples)
        if len(answers) != len(prompts):
            raise DataError(f"got {len(answers)} answers for a batch of {len(prompts)}")
        pairs = [list(verdict_pair(answer)) for answer in answers]
        if prefix is None:
            prefix = self.prefix(samples, self.qformer_prompts(samples))
        scores = self.bridge.score_targets(prefix, prompts, pairs, encoded)
        return torch.softmax(scores.float(), dim=1)[:, 0]
