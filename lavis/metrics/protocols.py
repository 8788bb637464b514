"""Scoring protocols: which normalisation feeds which open-question score and which closed rule.

* ``llava_med`` - LLaVA-Med ``llava/eval/run_eval.py`` as released (tag v1.0.0 = commit b9a98a7,
  "fix closed accuracy calculation") exactly.
* ``llava_med_initial`` - the same script as first published (commit e9972cf), whose closed accuracy
  leaves a prediction with a wrong yes/no out of the denominator; only to compare with numbers
  computed before the fix.
* ``quilt`` - Quilt-LLaVA ``llava/eval/quilt_eval.py --quilt True`` (no ``--anchor``) exactly.
* ``strict`` - ours: the same measurements with the quirks fixed (docs/metrics.md lists each).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lavis.common.errors import ConfigError, DataError
from lavis.metrics.closed import (
    YES_NO,
    llava_med_hit,
    llava_med_initial_hit,
    quilt_prediction_label,
    strict_hit,
)
from lavis.metrics.normalize import normalize_reference, normalize_strict
from lavis.metrics.open_ended import (
    OPEN_METRICS,
    reference_bleu,
    reference_exact_match,
    reference_overlap,
    strict_bleu,
    strict_exact_match,
    strict_overlap,
)
from lavis.metrics.vqa_files import VQARecord


@dataclass(frozen=True)
class Protocol:
    """How to score one question from its raw prediction text."""

    name: str
    score_open: Callable[[str, str], dict[str, float]]  # (prediction, reference) -> OPEN_METRICS
    score_closed: Callable[[VQARecord, str], int | None]  # None: left out of the accuracy


def _ordered(scores: dict[str, float]) -> dict[str, float]:
    return {name: scores[name] for name in OPEN_METRICS}


def _published_open(prediction: str, reference: str) -> dict[str, float]:
    """Both scripts normalise once, then ``calculate_f1score`` / ``calculate_exactmatch`` normalise
    again internally while BLEU uses the once-normalised words; the second pass matters (it
    removes the next 32 periods, for instance), so it is kept."""
    prediction_once, reference_once = normalize_reference(prediction), normalize_reference(reference)
    prediction_twice, reference_twice = (
        normalize_reference(prediction_once),
        normalize_reference(reference_once),
    )
    return _ordered(
        {
            **reference_overlap(prediction_twice, reference_twice),
            "exact_match": reference_exact_match(prediction_twice, reference_twice),
            **reference_bleu(prediction_once, reference_once),
        }
    )


def _llava_med_closed(record: VQARecord, prediction: str) -> int:
    return llava_med_hit(normalize_reference(prediction), normalize_reference(record.answer))


def _llava_med_initial_closed(record: VQARecord, prediction: str) -> int | None:
    return llava_med_initial_hit(normalize_reference(prediction), normalize_reference(record.answer))


def _quilt_closed(record: VQARecord, prediction: str) -> int:
    """The label is ``yes_no_answer`` lower-cased (not normalised); files without one fall back to
    the normalised answer, which is what the script does when run without ``--quilt``."""
    if record.yes_no_answer is not None:
        label = record.yes_no_answer.lower()
    else:
        label = normalize_reference(record.answer)
    if label not in YES_NO:
        raise DataError(
            f"question {record.question_id!r}: the quilt protocol needs a yes/no label for closed questions "
            f"(field 'yes_no_answer', else the answer), got {label!r}"
        )
    return int(quilt_prediction_label(normalize_reference(prediction)) == label)


def _strict_open(prediction: str, reference: str) -> dict[str, float]:
    prediction, reference = normalize_strict(prediction), normalize_strict(reference)
    return _ordered(
        {
            **strict_overlap(prediction, reference),
            "exact_match": strict_exact_match(prediction, reference),
            **strict_bleu(prediction, reference),
        }
    )


def _strict_closed(record: VQARecord, prediction: str) -> int:
    label = normalize_strict(record.yes_no_answer or record.answer)
    return strict_hit(normalize_strict(prediction), label)


PROTOCOLS: dict[str, Protocol] = {
    "llava_med": Protocol("llava_med", _published_open, _llava_med_closed),
    "llava_med_initial": Protocol("llava_med_initial", _published_open, _llava_med_initial_closed),
    "quilt": Protocol("quilt", _published_open, _quilt_closed),
    "strict": Protocol("strict", _strict_open, _strict_closed),
}


def get_protocol(protocol: str | Protocol) -> Protocol:
    """Look a protocol up by name (a :class:`Protocol` passes through)."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown VQA protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]
