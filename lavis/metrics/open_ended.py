"""Open-question scores on normalised text: the published definitions and our strict ones.

Every function takes already-normalised strings (words separated by single spaces) and returns
fractions in [0, 1]; protocols decide which normalisation feeds which score.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from functools import cache

OVERLAP_METRICS = ("recall", "precision", "f1")
BLEU_METRICS = ("bleu", "bleu_1", "bleu_2", "bleu_3")
OPEN_METRICS = (*OVERLAP_METRICS, "exact_match", *BLEU_METRICS)

# The published scripts call nltk's sentence_bleu with these weights: default 4-gram BLEU, and
# "BLEU-1/2/3" that are single n-gram precisions (times the brevity penalty), not cumulative BLEU.
REFERENCE_BLEU_WEIGHTS: dict[str, tuple[float, ...]] = {
    "bleu": (0.25, 0.25, 0.25, 0.25),
    "bleu_1": (1, 0, 0, 0),
    "bleu_2": (0, 1, 0, 0),
    "bleu_3": (0, 0, 1, 0),
}
# Strict: BLEU-n is the usual cumulative score over orders 1..n.
STRICT_BLEU_ORDERS: dict[str, int] = {"bleu": 4, "bleu_1": 1, "bleu_2": 2, "bleu_3": 3}


def _overlap(tp: float, predicted: int, expected: int) -> dict[str, float]:
    precision, recall = tp / predicted, tp / expected
    return {"recall": recall, "precision": precision, "f1": 2 * precision * recall / (precision + recall)}


_ZERO_OVERLAP = {"recall": 0.0, "precision": 0.0, "f1": 0.0}


def reference_overlap(prediction: str, reference: str) -> dict[str, float]:
    """LLaVA-Med's ``calculate_f1score``: word recall, precision and F1 (all 0 if a side is empty).

    tp adds the *prediction's* count of every shared word, so repeating a reference word raises
    recall: reference "cell tumor", prediction "cell cell cell" gives tp 3, fn 1, recall 0.75.
    """
    predicted, expected = Counter(prediction.split()), Counter(reference.split())
    tp = sum(count for word, count in predicted.items() if word in expected)
    if not predicted or not expected or tp == 0:
        return dict(_ZERO_OVERLAP)
    missed = sum(count for word, count in expected.items() if word not in predicted)
    return _overlap(tp, predicted.total(), tp + missed)


def reference_exact_match(prediction: str, reference: str) -> float:
    """LLaVA-Med's ``calculate_exactmatch``: distinct reference words found / prediction word count.

    Despite the name it is a precision-like ratio, not string equality.
    """
    predicted, expected = Counter(prediction.split()), set(reference.split())
    total = predicted.total()
    return sum(1 for word in expected if word in predicted) / total if total else 0.0


def strict_overlap(prediction: str, reference: str) -> dict[str, float]:
    """Clipped word overlap (each reference word can be matched as often as it occurs there).

    Two empty answers agree (all 1); one empty side scores 0.
    """
    predicted, expected = Counter(prediction.split()), Counter(reference.split())
    if not predicted and not expected:
        return {name: 1.0 for name in OVERLAP_METRICS}
    tp = (predicted & expected).total()
    if tp == 0:
        return dict(_ZERO_OVERLAP)
    return _overlap(tp, predicted.total(), expected.total())


def strict_exact_match(prediction: str, reference: str) -> float:
    """1 when the normalised answers are the same words in the same order, else 0."""
    return float(prediction.split() == reference.split())


@cache
def _nltk_bleu():
    # nltk takes over a second to import; only scoring pays for it, not ``import lavis``.
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return sentence_bleu, SmoothingFunction().method1


def _sentence_bleu(prediction: Sequence[str], reference: Sequence[str], **kwargs) -> float:
    sentence_bleu, _ = _nltk_bleu()
    with warnings.catch_warnings():  # nltk warns on every zero n-gram count; the scripts silence it
        warnings.simplefilter("ignore")
        return float(sentence_bleu(references=[list(reference)], hypothesis=list(prediction), **kwargs))


def reference_bleu(prediction: str, reference: str) -> dict[str, float]:
    """The scripts' BLEU: unsmoothed nltk ``sentence_bleu`` on whitespace words, their weights."""
    hypothesis, expected = prediction.split(), reference.split()
    return {
        name: _sentence_bleu(hypothesis, expected, weights=weights)
        for name, weights in REFERENCE_BLEU_WEIGHTS.items()
    }


def strict_bleu(prediction: str, reference: str) -> dict[str, float]:
    """Cumulative BLEU-n, smoothed, over at most as many orders as the prediction has words.

    Unsmoothed sentence BLEU-4 of a correct two-word answer is about 1e-154 because it has no
    3- and 4-grams; here it is 1. Zero counts of an order that exists get Chen & Cherry's
    method 1 (epsilon 0.1) instead of collapsing the score. Two empty answers score 1.
    """
    hypothesis, expected = prediction.split(), reference.split()
    if not hypothesis and not expected:
        return {name: 1.0 for name in BLEU_METRICS}
    _, smoothing = _nltk_bleu()
    scores = {}
    for name, order in STRICT_BLEU_ORDERS.items():
        effective = max(1, min(order, len(hypothesis)))
        weights = (1.0 / effective,) * effective
        scores[name] = _sentence_bleu(hypothesis, expected, weights=weights, smoothing_function=smoothing)
    return scores
