"""One batched model call for many questions: what the server, the chat and batch prediction share.

``Answerer.query`` turns an image, a question and the earlier turns into a :class:`Query`
(processed image tensor, question, the earlier turns the model's conversation contract lets it
see, decoding settings); ``Answerer.answer`` answers a
list of queries that share their decoding settings in one ``generate`` call, and adds what a
client needs beside the text: token counts, whether the answer stopped or hit the length limit,
and for closed questions the model's yes/no probabilities from its likelihoods.

Deterministic decoding (``temperature == 0``, the default) gives the same answer whatever else is
in the batch: padding is masked everywhere, so batching changes speed, not answers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from PIL import Image

from lavis.apps.inference.conversation import TokenBudget, apply_history_override, fold_within
from lavis.apps.inference.errors import InputError
from lavis.common.conversation import Turn
from lavis.common.errors import ConfigError
from lavis.common.schema import from_mapping
from lavis.common.textio import check_text
from lavis.models.llm.bridge import GenerationOptions
from lavis.models.llm.verdict import is_yes_no_question, verdict, verdict_pair
from lavis.processors.text_processors import clean_text

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}
_ALTERNATIVE = re.compile(r"\bor\b(?!\s+not\b)", re.IGNORECASE)  # "dense or loose?" asks to choose


@dataclasses.dataclass(frozen=True)
class Decoding:
    """How answers are generated. ``temperature == 0``: deterministic beam search (``num_beams``,
    ``length_penalty``); ``temperature > 0``: nucleus sampling (``top_p``), reproducible with ``seed``."""

    max_new_tokens: int = 40
    min_new_tokens: int = 5
    num_beams: int = 5
    length_penalty: float | None = None  # None: the LLM kind's default (-1 T5, 0 decoder-only)
    repetition_penalty: float = 1.0
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1  # answers per question
    seed: int | None = None

    @classmethod
    def from_generation(cls, generation: Mapping[str, Any], where: str = "generation", **overrides: Any) -> Decoding:
        """From a config's ``generation`` section (the ``GenerationOptions`` keys, typed and range
        checked; errors name ``<where>.<key>``), then ``overrides``."""
        options = from_mapping(GenerationOptions, generation, where)
        base = cls(
            max_new_tokens=options.max_new_tokens,
            min_new_tokens=options.min_new_tokens,
            num_beams=options.num_beams,
            length_penalty=options.length_penalty,
            repetition_penalty=options.repetition_penalty,
            temperature=options.temperature if options.use_nucleus_sampling else 0.0,
            top_p=options.top_p,
            n=options.num_return_sequences,
        )
        return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def options(self) -> GenerationOptions:
        if self.sampling:
            return GenerationOptions(
                num_beams=1, max_new_tokens=self.max_new_tokens, min_new_tokens=self.min_new_tokens,
                repetition_penalty=self.repetition_penalty, use_nucleus_sampling=True, top_p=self.top_p,
                temperature=self.temperature, num_return_sequences=self.n,
            )
        return GenerationOptions(
            num_beams=max(self.num_beams, self.n), max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.min_new_tokens, length_penalty=self.length_penalty,
            repetition_penalty=self.repetition_penalty, num_return_sequences=self.n,
        )

    def group_key(self) -> Hashable | None:
        """Queries with equal keys may share one ``generate`` call; None: this one runs alone
        (seeded sampling: its answer must depend on its seed only, not on its batch neighbours)."""
        if not self.sampling:
            return dataclasses.replace(self, seed=None)  # the seed means nothing without sampling
        return None if self.seed is not None else self


@dataclasses.dataclass
class Query:
    """One question ready for the model."""

    image: torch.Tensor  # (3, H, W), the model's eval transform applied
    instruction: str  # what the LLM reads before the prompt template: the question, earlier turns folded in
    decoding: Decoding
    closed: bool = False  # a yes/no question: the answer gets yes/no probabilities
    prompt_tokens: int = 0
    question: str = ""  # the current question alone (what the Q-Former reads)
    history: list[Turn] = dataclasses.field(default_factory=list)  # the earlier turns the model sees

    @property
    def turns_kept(self) -> int:
        return len(self.history)


@dataclasses.dataclass
class Choice:
    text: str
    finish_reason: str  # "stop" (the model ended its answer) or "length" (max_new_tokens reached)
    completion_tokens: int
    yes_no: dict[str, float] | None = None  # closed questions: {"yes": P(yes), "no": P(no)}


@dataclasses.dataclass
class Answer:
    choices: list[Choice]
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return sum(choice.completion_tokens for choice in self.choices)


def settle_verdict(text: str, p_yes: float | None) -> str:
    """The answer whose verdict agrees with the reported confidence, by construction.

    P(yes) compares the generated answer with the same sentence carrying the other verdict
    (``lavis.models.llm.verdict``); when the model finds the other one more likely (beam search
    ranks whole sequences, so its verdict can be the less likely word), that one is the answer
    shown, and the yes/no reported is always the verdict in the text."""
    if p_yes is None:
        return text
    says_yes, says_no = verdict_pair(text)
    return says_yes if p_yes >= 0.5 else says_no


T5_LONGEST_ANSWER = 512  # T5's pre-training sequence length (it has no position table to read a limit from)


def longest_answer(model: Any) -> tuple[int, str]:
    """(the most new tokens ``model``'s LLM can hold, why). A decoder-only LLM: its position table
    less what comes before the answer (query tokens, instruction budget). An encoder-decoder (T5)
    has relative positions and no table: ``T5_LONGEST_ANSWER``. Past these an answer is noise at
    best, and beam search allocates its buffers for the whole length at once (100M new tokens
    exhausted 16.7 GB with the tiny demo model)."""
    from lavis.models.llm.causal import CausalBridge

    config = model.bridge.model.config
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(model.bridge, CausalBridge) and positions:
        before = int(model.query_tokens.shape[1]) + int(model.cfg.max_txt_len)
        return positions - before, f"its LLM has {positions} positions, {before} of them for the query tokens and instruction"
    return T5_LONGEST_ANSWER, "the sequence length T5 was pre-trained with; it has no position table"


def closed_question(question: str) -> bool:
    """A yes/no question ("Is there necrosis?"), not a choice between alternatives ("Is it dense or loose?")."""
    return is_yes_no_question(question) and not _ALTERNATIVE.search(question)


class Answerer:
    """A loaded model (``lavis.models.load_pretrained``) ready to answer batches of questions.

    ``query`` uses token counters owned by the calling thread; ``answer`` runs the model and may
    run on another thread (one at a time).
    """

    def __init__(self, loaded: Any, precision: str | None = None, history_override: str | None = None) -> None:
        """``history_override``: a history format to fold earlier turns in although the model's
        contract says otherwise, or ``none`` (experiments; logged)."""
        if not loaded.can_answer:
            raise ConfigError(f"'{loaded.source}' cannot answer questions (no language model)")
        self.loaded = loaded
        self.model = loaded.model
        self.conversation = apply_history_override(self.model, history_override)
        self.budget = TokenBudget(self.model)
        self.amp_dtype = _AMP.get(precision or "")
        self.longest_answer, self._longest_why = longest_answer(self.model)

    @property
    def name(self) -> str:
        return self.loaded.name

    def check_length(self, decoding: Decoding) -> Decoding:
        """``decoding`` when its answers fit the model (``longest_answer``), else ``InputError``."""
        if decoding.max_new_tokens > self.longest_answer:
            raise InputError(
                f"max_new_tokens={decoding.max_new_tokens} is more than this model can answer with: at most "
                f"{self.longest_answer} new tokens ({self._longest_why})", "invalid_value", "max_tokens",
            )
        return decoding

    def image_tensor(self, image: Image.Image) -> torch.Tensor:
        """The model's eval transform of an RGB image (thread-safe)."""
        return self.loaded.vis_processor(image)

    def query(
        self,
        image: Image.Image | torch.Tensor,
        question: str,
        history: Sequence[Turn] = (),
        decoding: Decoding | None = None,
        strict: bool = True,
        yes_no: bool = True,
    ) -> Query:
        """A query for ``question`` about ``image`` after the earlier turns ``history``.

        ``strict``: a question that alone exceeds the instruction budget is an ``InputError``
        (a server's 400); otherwise it is passed on and the model cuts it on the left, as
        evaluation does. ``yes_no``: closed questions get yes/no probabilities (one more forward pass).
        """
        text = clean_text(check_text(question, "the question"))
        if not text:
            raise InputError("the question is empty", "invalid_value", "messages")
        processed = self.loaded.text_processor(text)
        earlier = [Turn(self.loaded.text_processor(clean_text(t.question)), clean_text(t.answer)) for t in history]
        instruction, kept = fold_within(processed, earlier, self.budget, self.conversation)
        if strict and not self.budget.fits(processed):
            raise InputError(
                f"the question has {self.budget.count(processed)} tokens with the prompt template, over this "
                f"model's instruction budget of {self.budget.limit} tokens; ask a shorter question",
                "context_length_exceeded", "messages",
            )
        tensor = image if isinstance(image, torch.Tensor) else self.image_tensor(image)
        prompt_tokens = min(self.budget.llm_tokens(instruction), self.budget.limit) + self.budget.queries
        closed = yes_no and closed_question(text)
        return Query(tensor, instruction, self.check_length(decoding or Decoding()), closed, prompt_tokens, processed, kept)

    def samples(self, queries: Sequence[Query]) -> dict[str, Any]:
        """The model's input batch for ``queries``: stacked images, the questions, and the earlier
        turns the contract lets the model see (folded by the model, as in its training)."""
        return {
            "image": torch.stack([q.image for q in queries]).to(self.model.device),
            "text_input": [q.question or q.instruction for q in queries],
            "history": [q.history for q in queries],
        }

    @torch.no_grad()
    def answer(self, queries: Sequence[Query]) -> list[Answer]:
        """Answers to ``queries`` (same ``group_key``) from one batched ``generate`` call."""
        if not queries:
            return []
        decoding = queries[0].decoding
        key = decoding.group_key()
        if len(queries) > 1 and (key is None or any(q.decoding.group_key() != key for q in queries)):
            raise ValueError("queries answered together must share their decoding settings (Decoding.group_key)")
        model = self.model
        samples = self.samples(queries)
        with model.autocast(self.amp_dtype):
            prompts = model.prompts(samples)
            prefix = model.prefix(samples, model.qformer_prompts(samples))
            if decoding.sampling and decoding.seed is not None:
                torch.manual_seed(decoding.seed)  # every device's generator
            ids = model.bridge.generate_ids(prefix, prompts, decoding.options())
            return self.answers_from_ids(queries, ids, samples, prefix)

    @torch.no_grad()
    def answers_from_ids(self, queries: Sequence[Query], ids: torch.Tensor, samples: dict[str, Any] | None = None,
                         prefix: torch.Tensor | None = None,
                         encoded: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[Answer]:
        """Answers from generated token ids (``n`` rows per query, as ``generate`` returns them, padded):
        the text, token counts and finish reasons, and yes/no probabilities for closed questions.
        ``prefix``: the queries' query outputs from generation, so that the confidence does not read
        the images again, and ``encoded`` (an encoder-decoder's encoder output and mask per query),
        so that it does not read the prompts again. Call it under the model's autocast, as generation ran."""
        n = queries[0].decoding.n
        texts = self.model.bridge.decode(ids)
        yes = self._p_yes(samples if samples is not None else self.samples(queries), queries, texts, n, prefix, encoded)
        texts = [settle_verdict(text, yes.get(k)) for k, text in enumerate(texts)]
        counts = self._token_counts(ids)
        answers = []
        for i, query in enumerate(queries):
            choices = []
            for j in range(n):
                k = i * n + j
                yes_no = None if yes.get(k) is None else {"yes": yes[k], "no": 1.0 - yes[k]}
                choices.append(Choice(texts[k], counts[k][1], counts[k][0], yes_no))
            answers.append(Answer(choices, query.prompt_tokens))
        return answers

    def _p_yes(self, samples: dict[str, Any], queries: Sequence[Query], texts: list[str], n: int,
               prefix: torch.Tensor | None = None,
               encoded: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[int, float]:
        """P(yes) per generated answer of the closed questions that states a verdict (index into
        ``texts``); an answer without one ("large") gets none: there is no verdict to be sure of."""
        rows = [i * n + j for i, q in enumerate(queries) if q.closed for j in range(n)
                if verdict(texts[i * n + j]) is not None]
        if not rows:
            return {}
        owners = torch.tensor([row // n for row in rows], device=samples["image"].device)
        closed = {
            "image": samples["image"].index_select(0, owners),
            "text_input": [samples["text_input"][row // n] for row in rows],
            "history": [samples["history"][row // n] for row in rows],
        }
        probs = self.model.yes_no_probabilities(
            closed, answers=[texts[row] for row in rows],
            prefix=None if prefix is None else prefix.index_select(0, owners),
            encoded=None if encoded is None else tuple(part.index_select(0, owners) for part in encoded))
        return {row: round(float(p), 6) for row, p in zip(rows, probs.tolist())}

    def _token_counts(self, ids: torch.Tensor) -> list[tuple[int, str]]:
        """(generated tokens, finish reason) per row: "stop" when the row holds EOS, else "length"."""
        from lavis.models.llm.seq2seq import Seq2SeqBridge

        tokenizer = self.model.bridge.tokenizer
        eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        rows = ids[:, 1:] if isinstance(self.model.bridge, Seq2SeqBridge) else ids  # T5: drop the start token
        out = []
        for row in rows.tolist():
            if eos in row:
                out.append((row.index(eos) + 1, "stop"))
                continue
            while row and pad is not None and row[-1] == pad:
                row.pop()
            out.append((len(row), "length"))
        return out
