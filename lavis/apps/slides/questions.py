"""What is asked of each tile, and how a model answers a batch of tiles from their features.

Modes:
- ``closed``: P(yes) from the model's likelihoods. The model first answers (greedy); P(yes) is
  the softmax over the likelihoods of that answer with its verdict word set to yes and to no
  (:meth:`yes_no_probabilities`), so it works for a bare "yes" and for "The tissue is dense: yes.".
- ``open``: the answer text (greedy or beam search).
- ``retrieval`` (stage-1 models): the ITC similarity of the tile to the query text (cosine of
  the best query token, -1..1), so a stage-1 checkpoint is already useful.
- ``auto`` (default): retrieval for a stage-1 model, closed for a yes/no question, else open.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import torch

from lavis.common.errors import CheckpointError, ConfigError
from lavis.common.textio import check_text
from lavis.models.llm.verdict import is_yes_no_question

MODES = ("auto", "closed", "open", "retrieval")


@dataclasses.dataclass(frozen=True)
class Question:
    text: str  # as asked
    mode: str  # closed | open | retrieval
    prompt: str  # after the model's text processor

    @property
    def folder(self) -> str:
        """Output folder name: mode, a readable slug and a short hash of the exact question."""
        slug = "-".join(re.findall(r"[a-z0-9]+", self.text.lower()))[:48].strip("-") or "question"
        digest = hashlib.sha256(f"{self.mode}\n{self.text}".encode()).hexdigest()[:6]
        return f"{self.mode}-{slug}-{digest}"


@dataclasses.dataclass(frozen=True)
class Generation:
    max_new_tokens: int = 32
    num_beams: int = 1


def check_questions(texts: list[str]) -> list[str]:
    """Stripped questions; an empty one is an error (it would score every tile on nothing)."""
    if not texts:
        raise ConfigError("give at least one --question")
    out = []
    for i, text in enumerate(texts):
        text = check_text(text or "", f"--question number {i + 1}").strip()
        if not text:
            raise ConfigError(f"--question number {i + 1} is empty: ask something about the tissue")
        out.append(text)
    if len(set(out)) != len(out):
        raise ConfigError("the same --question is given twice")
    return out


def required_capability(mode: str) -> str | None:
    """What ``load_pretrained(require=...)`` must check for ``mode``."""
    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    return {"closed": "answer", "open": "answer", "retrieval": "retrieval"}.get(mode)


def resolve(texts: list[str], mode: str, loaded: Any) -> list[Question]:
    """One :class:`Question` per text with its mode settled against what the model can do."""
    questions = []
    for text in texts:
        chosen = mode
        if mode == "auto":
            if loaded.can_answer:
                chosen = "closed" if is_yes_no_question(text) else "open"
            elif loaded.can_retrieve:
                chosen = "retrieval"
            else:
                raise CheckpointError(f"'{loaded.source}' can neither answer questions nor score image-text similarity")
        if chosen in ("closed", "open") and not loaded.can_answer:
            raise CheckpointError(f"'{loaded.source}' cannot answer questions (no language model): use --mode retrieval")
        if chosen == "retrieval" and not loaded.can_retrieve:
            raise CheckpointError(
                f"'{loaded.source}' has no image-text similarity head: --mode retrieval needs a stage-1 model; "
                "use --mode closed or open with this one"
            )
        questions.append(Question(text, chosen, loaded.text_processor(text)))
    return questions


@torch.no_grad()
def answer(model: Any, question: Question, image_embeds: torch.Tensor, generation: Generation) -> tuple[list[float | None], list[str]]:
    """(scores, answers) for a batch of tiles given their frozen-encoder features."""
    batch = image_embeds.shape[0]
    if question.mode == "retrieval":
        similarity = model.itc_similarity(image_embeds, [question.prompt])[:, 0]
        return [float(v) for v in similarity.float().cpu()], [""] * batch
    samples = {"image_embeds": image_embeds, "text_input": [question.prompt] * batch}
    if question.mode == "open":
        answers = model.generate(samples, num_beams=generation.num_beams, max_new_tokens=generation.max_new_tokens,
                                 min_new_tokens=1)
        return [None] * batch, list(answers)
    answers = model.generate(samples, num_beams=1, max_new_tokens=generation.max_new_tokens, min_new_tokens=1)
    p_yes = model.yes_no_probabilities(samples, answers)
    return [float(v) for v in p_yes.float().cpu()], list(answers)
