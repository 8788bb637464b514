"""The demo report's statistics: tile-bootstrap intervals, rank correlation, per-attribute rows, goals."""

from types import SimpleNamespace

import numpy as np
import pytest

from lavis.apps.demo.report import missed_goals
from lavis.apps.demo.scoring import by_attribute, scored_rows, summarize_rows, tile_bootstrap_ci
from lavis.metrics.ranking import spearman
from lavis.metrics.vqa import VQARecord


def test_spearman_matches_the_rank_formula_and_handles_ties():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # no ties: 1 - 6 sum d^2 / (n (n^2 - 1))
    x, y = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0], [2.0, 7.0, 1.0, 8.0, 2.5, 8.5]
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    expected = 1 - 6 * ((rx - ry) ** 2).sum() / (6 * 35)
    assert spearman(x, y) == pytest.approx(expected)
    # ties share their average rank: a binary predictor still correlates
    assert spearman([0, 0, 1, 1], [1, 2, 3, 4]) == pytest.approx(np.corrcoef([1.5, 1.5, 3.5, 3.5], [1, 2, 3, 4])[0, 1])
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # a constant side has no ranking
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


def test_tile_bootstrap_resamples_tiles_not_questions():
    # one tile with 9 right answers, nine tiles with one wrong answer each: by questions the mean is
    # 50%, and the interval must reflect 10 tiles, not 18 independent questions
    values = [1.0] * 9 + [0.0] * 9
    tiles = ["a"] * 9 + [f"t{i}" for i in range(9)]
    low, high = tile_bootstrap_ci(values, tiles, seed=1)
    assert low < 50 < high
    assert high - low > 60  # one heavy tile in or out swings the mean a lot
    same = tile_bootstrap_ci(values, tiles, seed=1)
    assert same == [low, high]  # seeded
    assert tile_bootstrap_ci([1.0, 1.0], ["x", "y"]) == [100.0, 100.0]
    assert tile_bootstrap_ci([], []) is None


def test_rows_are_scored_strictly_and_grouped_by_attribute():
    truth = [
        VQARecord("q1", "Is the tissue dense?", "The tissue is dense: yes.", "CLOSED", "yes"),
        VQARecord("q2", "Is the tissue dense?", "The tissue is loose: no.", "CLOSED", "no"),
        VQARecord("q3", "Which stain?", "IHC", "OPEN", None),
        VQARecord("q4", "Is it H&E?", "It is stained with IHC: no.", "CLOSED", "no"),
    ]
    predictions = {"q1": "The tissue is dense: yes.", "q2": "The tissue is loose", "q3": "IHC", "q4": "no"}
    tiles = {"q1": "t1", "q2": "t2", "q3": "t3", "q4": "t3"}
    attributes = {"q1": "tissue_density", "q2": "tissue_density", "q3": "stain", "q4": "stain"}
    rows = scored_rows(truth, predictions, tiles, attributes)
    groups = by_attribute(rows, ["tissue_density", "stain"])
    # strict: an answer without a verdict is a miss (the quilt rule would call q2 a yes)
    assert groups["tissue_density"]["closed_accuracy"] == 50.0 and groups["tissue_density"]["num_closed"] == 2
    assert groups["stain"] == {**groups["stain"], "closed_accuracy": 100.0, "open_recall": 100.0,
                               "num_closed": 1, "num_open": 1, "num_tiles": 1}
    overall = summarize_rows(rows)
    assert overall["closed_accuracy"] == pytest.approx(200 / 3, abs=0.01) and overall["num_tiles"] == 3


def _report(**changes):
    base = {"closed_accuracy": 90.0, "closed_accuracy_question_only": 50.0, "open_recall": 80.0,
            "open_recall_question_only": 50.0, "density_spearman": 0.7,
            "by_attribute": {"stain": {"closed_accuracy": 99.0, "open_recall": 98.0},
                             "magnification": {"closed_accuracy": 90.0, "open_recall": 80.0}},
            "served": {"closed_accuracy_heldout_wording": 90.0, "open_recall_heldout_wording": 80.0,
                       "alone_closed_accuracy": 90.0, "followup_closed_accuracy": 88.0,
                       "verdict_confidence_agreement": 100.0}}
    return {**base, **changes}


GOALS = SimpleNamespace(closed_accuracy=85.0, closed_gap=25.0, open_recall_gap=20.0, attribute_closed_accuracy=85.0,
                        attribute_open_recall=75.0, density_spearman=0.5, heldout_closed_accuracy=85.0,
                        heldout_open_recall=75.0, followup_max_drop=3.0, verdict_agreement=100.0)


def test_goals_name_every_miss():
    assert missed_goals(_report(), GOALS) == []
    served = {"closed_accuracy_heldout_wording": 84.0, "open_recall_heldout_wording": 75.0,
              "alone_closed_accuracy": 90.0, "followup_closed_accuracy": 86.5, "verdict_confidence_agreement": 99.0}
    missed = missed_goals(_report(closed_accuracy_question_only=70.0, density_spearman=None, served=served,
                                  by_attribute={"magnification": {"closed_accuracy": 84.9, "open_recall": 75.0}}), GOALS)
    assert missed == [
        "closed accuracy over the question-only model is 20.0, goal >= 25",
        "magnification closed accuracy is 84.9, goal >= 85",
        "closed accuracy on held-out wordings (strict, through the server) is 84.0, goal >= 85",
        "a follow-up's closed accuracy is 3.5 points below the same questions asked alone, goal <= 3",
        "verdict/confidence agreement of closed answers (through the server) is 99.0, goal >= 100",
        "density check Spearman is none, goal >= 0.5",
    ]
