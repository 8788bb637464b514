"""A stage-2 instruction mix with the length spread of CLOVER's data, written on the spot.

Two sources, as ``generate_instructions.py`` writes them:

- **template** (40%): the shipped template bank (configs/instructions/templates/default.yaml) -
  a detailed-description prompt answered by the caption, or an attribute's open / closed
  question with its answer; word counts are the bank's own, values 1-2 words, captions
  log-normal around 17 words (1 to 150; ``captions`` writes stage 1's);
- **generated** (60%): GPT-style pairs with questions of 5-60 words (log-normal, median 12) and
  answers of 1-150 words (log-normal, median 22: "one to three sentences", the prompt's worked
  example has 8-25 words), within the filter's bounds.

Only lengths matter for speed: the words are drawn from the benchmark tokenizers' vocabulary
(one word, about one token), so every tokenizer sees the lengths the mix describes.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np

from benchmarks.sizes import CORPUS

GENERATED_SHARE = 0.6
QUESTION_WORDS = (5, 60)
ANSWER_WORDS = (1, 150)


@dataclasses.dataclass(frozen=True)
class Pair:
    question: str
    answer: str
    source: str  # generated | template
    answer_type: str  # OPEN | CLOSED


def _lognormal(rng: np.random.Generator, median: float, sigma: float, low: int, high: int) -> int:
    return int(np.clip(round(rng.lognormal(np.log(median), sigma)), low, high))


def _template_shapes() -> list[tuple[int, int | None, str]]:
    """(question words, answer words or None = the caption, answer type) of every bank template."""
    from lavis.instructions.templates import load_template_bank

    bank = load_template_bank()

    def words(text: str) -> int:
        return len(text.replace("{value}", "x").replace("{Value}", "x").replace("{true_value}", "x").split())

    shapes: list[tuple[int, int | None, str]] = [(words(p), None, "OPEN") for p in bank.detailed_prompts]
    for spec in bank.attributes.values():
        if spec.open:
            shapes += [(words(q), words(a), "OPEN") for q in spec.open.questions for a in spec.open.answers]
        if spec.closed:
            answers = spec.closed.yes_answers + spec.closed.no_answers
            shapes += [(words(q), words(a), "CLOSED") for q in spec.closed.questions for a in answers]
    return shapes


def caption_words(rng: np.random.Generator) -> int:
    """Words of one Quilt-1M-like caption: log-normal around 17 words (1 to 150)."""
    return _lognormal(rng, 17, 0.7, *ANSWER_WORDS)


def captions(count: int, seed: int = 0) -> list[str]:
    """``count`` stage-1 captions with the lengths of ``caption_words`` (corpus words)."""
    rng, pick = np.random.default_rng(seed), random.Random(seed)
    vocabulary = sorted({w for line in CORPUS for w in line.split()})
    return [" ".join(pick.choice(vocabulary) for _ in range(caption_words(rng))) for _ in range(count)]


def make_pairs(count: int, seed: int = 0) -> list[Pair]:
    """``count`` question-answer pairs of the mix, deterministic per seed."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    vocabulary = sorted({w for line in CORPUS for w in line.split()})
    shapes = _template_shapes()

    def text(words: int) -> str:
        return " ".join(pick.choice(vocabulary) for _ in range(max(1, words)))

    pairs = []
    for _ in range(count):
        if rng.random() < GENERATED_SHARE:
            question = _lognormal(rng, 12, 0.55, *QUESTION_WORDS)
            answer = _lognormal(rng, 22, 0.75, *ANSWER_WORDS)
            pairs.append(Pair(text(question), text(answer), "generated", "OPEN"))
            continue
        question, answer, kind = shapes[int(rng.integers(len(shapes)))]
        extra = int(rng.integers(0, 2))  # a value of 1-2 words in question and answer
        caption = caption_words(rng)
        answer_words = caption if answer is None else answer + extra
        pairs.append(Pair(text(question + extra), text(answer_words), "template", kind))
    return pairs


def word_counts(pairs: list[Pair]) -> dict[str, dict[str, float]]:
    """Min / median / mean / max words of questions and answers (reported beside the timings)."""
    out = {}
    for name in ("question", "answer"):
        counts = np.asarray([len(getattr(p, name).split()) for p in pairs])
        out[name] = {"min": int(counts.min()), "median": float(np.median(counts)), "mean": float(counts.mean()),
                     "max": int(counts.max())}
    return out
