"""Closed-question (yes/no) decision rules, applied to normalised text.

Each rule returns 1 (hit), 0 (miss) or ``None``: the first published version of LLaVA-Med's
``run_eval.py`` recorded nothing for some answers, which took them out of the accuracy's
denominator (its released version fixed that; see docs/metrics.md).
"""

from __future__ import annotations

YES_NO = ("yes", "no")


def llava_med_hit(prediction: str, answer: str) -> int:
    """LLaVA-Med ``run_eval.py`` as released (tag v1.0.0, commit b9a98a7): substring tests on
    normalised strings. A hit needs the prediction to contain "yes" or "no" *as a substring*
    ("normal", "nodule", "not" and "know" all contain "no") and the normalised answer as a
    substring; every other prediction is a miss, so every closed question is in the denominator."""
    has_verdict = "yes" in prediction or "no" in prediction
    return int(has_verdict and answer in prediction)


def llava_med_initial_hit(prediction: str, answer: str) -> int | None:
    """The first published ``run_eval.py`` (commit e9972cf, before "fix closed accuracy
    calculation"): as :func:`llava_med_hit`, except that a prediction containing yes/no but not the
    answer appends nothing, so the question leaves the accuracy (``None``)."""
    if "yes" not in prediction and "no" not in prediction:
        return 0
    return 1 if answer in prediction else None


def quilt_prediction_label(prediction: str) -> str:
    """Quilt-LLaVA ``quilt_eval.py``: "no" if any space-separated word (commas removed) is "no" or
    "not", otherwise "yes" - so an empty or evasive answer counts as "yes"."""
    words = prediction.replace(",", "").split(" ")
    return "no" if "no" in words or "not" in words else "yes"


def strict_hit(prediction: str, label: str) -> int:
    """Ours. For a yes/no label the first whole word "yes" or "no" in the prediction decides; an
    answer with neither is a miss. Any other label must appear as a whole-word phrase."""
    words = prediction.split()
    if label in YES_NO:
        return int(next((word for word in words if word in YES_NO), None) == label)
    wanted = label.split()
    if not wanted:
        return 0
    return int(any(words[start : start + len(wanted)] == wanted for start in range(len(words))))
