"""Open-question scores and closed-question rules on normalised text, with hand-computed values."""

from __future__ import annotations

import math
import sys

import pytest
from nltk.translate.bleu_score import sentence_bleu

from lavis.metrics.closed import llava_med_hit, llava_med_initial_hit, quilt_prediction_label, strict_hit
from lavis.metrics.open_ended import (
    reference_bleu,
    reference_exact_match,
    reference_overlap,
    strict_bleu,
    strict_exact_match,
    strict_overlap,
)

TINY = sys.float_info.min  # what nltk substitutes for a zero n-gram precision when unsmoothed


def test_reference_overlap_counts_repeated_prediction_words() -> None:
    # reference "cell tumor", prediction "cell cell cell":
    # tp = prediction count of "cell" = 3, fp = 0, fn = 1 ("tumor")
    # precision 3/3 = 1, recall 3/4, F1 = 2 * 1 * 0.75 / 1.75 = 6/7
    scores = reference_overlap("cell cell cell", "cell tumor")
    assert scores == pytest.approx({"recall": 0.75, "precision": 1.0, "f1": 6 / 7})
    # exact match: distinct reference words found (1: "cell") / prediction words (3)
    assert reference_exact_match("cell cell cell", "cell tumor") == pytest.approx(1 / 3)


def test_strict_overlap_clips_counts() -> None:
    # clipped overlap min(3, 1) = 1: precision 1/3, recall 1/2, F1 = 2 * (1/6) / (5/6) = 0.4
    scores = strict_overlap("cell cell cell", "cell tumor")
    assert scores == pytest.approx({"recall": 0.5, "precision": 1 / 3, "f1": 0.4})
    assert strict_exact_match("cell cell cell", "cell tumor") == 0.0
    assert strict_exact_match("cell tumor", "cell tumor") == 1.0


def test_reference_overlap_with_partial_match() -> None:
    # prediction "large tumor cells", reference "tumor cells": tp 2, fp 1, fn 0
    # precision 2/3, recall 1, F1 = 2 * (2/3) / (5/3) = 0.8; exact match 2 distinct / 3 words
    assert reference_overlap("large tumor cells", "tumor cells") == pytest.approx(
        {"recall": 1.0, "precision": 2 / 3, "f1": 0.8}
    )
    assert reference_exact_match("large tumor cells", "tumor cells") == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("prediction", "reference"), [("", "tumor"), ("tumor", ""), ("", ""), ("cyst", "tumor")]
)
def test_reference_empty_or_disjoint_scores_zero(prediction: str, reference: str) -> None:
    assert reference_overlap(prediction, reference) == {"recall": 0.0, "precision": 0.0, "f1": 0.0}
    assert reference_exact_match(prediction, reference) == 0.0


def test_strict_empty_answers() -> None:
    # two empty answers agree; one empty side is a miss
    assert strict_overlap("", "") == {"recall": 1.0, "precision": 1.0, "f1": 1.0}
    assert strict_overlap("", "tumor") == {"recall": 0.0, "precision": 0.0, "f1": 0.0}
    assert strict_exact_match("", "") == 1.0
    assert strict_bleu("", "") == {"bleu": 1.0, "bleu_1": 1.0, "bleu_2": 1.0, "bleu_3": 1.0}
    assert strict_bleu("", "tumor")["bleu"] == 0.0


@pytest.mark.filterwarnings("ignore:\\nThe hypothesis contains 0 counts:UserWarning")
def test_reference_bleu_uses_single_ngram_weights() -> None:
    prediction, reference = "cells are large", "cells are large and round"
    # every 1-, 2- and 3-gram of the prediction is in the reference; no 4-grams exist.
    # brevity penalty: c = 3 < r = 5 -> exp(1 - 5/3)
    penalty = math.exp(1 - 5 / 3)
    scores = reference_bleu(prediction, reference)
    assert scores["bleu_1"] == pytest.approx(penalty)
    assert scores["bleu_2"] == pytest.approx(penalty)
    assert scores["bleu_3"] == pytest.approx(penalty)
    # 4-gram BLEU: p4 is zero -> nltk's tiny float, weight 1/4
    assert scores["bleu"] == pytest.approx(penalty * TINY**0.25, rel=1e-9)
    # and the same numbers as nltk called the way the scripts call it
    hyp, refs = prediction.split(), [reference.split()]
    assert scores["bleu"] == sentence_bleu(references=refs, hypothesis=hyp)
    assert scores["bleu_2"] == sentence_bleu(references=refs, hypothesis=hyp, weights=(0, 1, 0, 0))


def test_strict_bleu_is_cumulative_and_handles_short_answers() -> None:
    # same pair: effective order min(n, 3 words); all precisions are 1 -> every score is the penalty
    penalty = math.exp(1 - 5 / 3)
    assert strict_bleu("cells are large", "cells are large and round") == pytest.approx(
        {"bleu": penalty, "bleu_1": penalty, "bleu_2": penalty, "bleu_3": penalty}
    )
    # a correct two-word answer: strict 1.0, published BLEU-4 about sqrt(TINY) (p3 = p4 = TINY)
    assert strict_bleu("benign tumor", "benign tumor")["bleu"] == pytest.approx(1.0)
    assert reference_bleu("benign tumor", "benign tumor")["bleu"] == pytest.approx(TINY**0.5, rel=1e-9)


def test_strict_bleu_matches_nltk_with_smoothing() -> None:
    from nltk.translate.bleu_score import SmoothingFunction

    # 5 words, one substitution: 4-grams have no match; method1 smoothing keeps the score informative
    hyp, ref = "a b x d e".split(), "a b c d e".split()
    expected = sentence_bleu([ref], hyp, smoothing_function=SmoothingFunction().method1)
    assert strict_bleu("a b x d e", "a b c d e")["bleu"] == pytest.approx(expected)
    # hand check of bleu_2: p1 = 4/5, p2 = 2/4 ("a b", "d e"), BP 1 -> sqrt(0.4)
    assert strict_bleu("a b x d e", "a b c d e")["bleu_2"] == pytest.approx(math.sqrt(0.8 * 0.5))


@pytest.mark.parametrize(
    ("prediction", "answer", "released", "initial"),
    [
        ("tissue looks normal", "no", 1, 1),  # "no" is a substring of "normal": counted as saying no
        ("nodule is seen", "yes", 0, None),  # "nodule" contains "no", "yes" absent: miss / dropped
        ("nodule is seen", "no", 1, 1),
        ("it is benign", "yes", 0, 0),  # neither "yes" nor "no" as a substring: a miss in both
        ("yes but it is not malignant", "yes", 1, 1),
        ("yes", "no", 0, None),  # a wrong verdict: a miss since the Dec 2023 fix, dropped before
        ("no", "yes", 0, None),
        ("", "yes", 0, 0),
    ],
)
def test_llava_med_substring_rule(prediction: str, answer: str, released: int, initial: int | None) -> None:
    assert llava_med_hit(prediction, answer) == released
    assert llava_med_initial_hit(prediction, answer) == initial


@pytest.mark.parametrize(
    ("prediction", "label"),
    [
        ("yes it is not malignant", "no"),  # any "not" makes it "no"
        ("no", "no"),
        ("nothing abnormal", "yes"),  # whole words only: "nothing" is not "no"
        ("tissue looks normal", "yes"),
        ("", "yes"),  # an empty answer counts as "yes"
        ("isn't malignant", "yes"),  # the contraction is not the word "not"
    ],
)
def test_quilt_rule(prediction: str, label: str) -> None:
    assert quilt_prediction_label(prediction) == label


@pytest.mark.parametrize(
    ("prediction", "label", "expected"),
    [
        ("yes it is not malignant", "yes", 1),  # the first yes/no word decides
        ("no it is malignant yes", "yes", 0),
        ("tissue looks normal", "no", 0),  # no explicit yes/no: a miss, not a guess
        ("", "yes", 0),
        ("left lobe", "left", 1),  # non-yes/no labels: whole-word phrase
        ("leftover", "left", 0),
        ("in left upper lobe", "left upper", 1),
    ],
)
def test_strict_closed_rule(prediction: str, label: str, expected: int) -> None:
    assert strict_hit(prediction, label) == expected
