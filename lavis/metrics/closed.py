"""Closed-question (yes/no) decision rules, applied to normalised text.

Each rule returns 1 (hit), 0 (miss) or ``None``: LLaVA-Med's ``run_eval.py`` records nothing at all
for some answers, which takes them out of the accuracy's denominator.
"""

from __future__ import annotations

YES_NO = ("yes", "no")


def llava_med_hit(prediction: str, answer: str) -> int | None:
    """LLaVA-Med ``run_eval.py``: substring tests on normalised strings.

    * the prediction must contain "yes" or "no" *as a substring* ("normal", "nodule", "not" and
      "know" all contain "no"); if it does not, the question counts as a miss;
    * then it is a hit if the normalised answer is a substring of the prediction; otherwise the
      script appends nothing, so the question is left out of the accuracy (``None``).
    """
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
