"""The filtering step of CLOVER's instruction generation: keep only pairs that meet the rules.

Each rejected pair keeps its text and the reason (``empty_question``, ``question_length``,
``mentions_source``, ``date``, ``magnification``, ``duplicate_question``...), so the raw output
shows exactly what the filter removed and why.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from lavis.common.errors import ConfigError


@dataclasses.dataclass
class FilterRules:
    max_pairs: int = 5
    question_words: tuple[int, int] = (3, 40)
    answer_words: tuple[int, int] = (1, 120)
    banned: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # reason -> regexes

    def validate(self) -> None:
        if self.max_pairs < 1:
            raise ConfigError(f"'max_pairs' must be >= 1, got {self.max_pairs}")
        for name, (low, high) in (("question_words", self.question_words), ("answer_words", self.answer_words)):
            if not 0 <= low <= high:
                raise ConfigError(f"'{name}' must be [min, max] with 0 <= min <= max, got {[low, high]}")
        for reason, patterns in self.banned.items():
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise ConfigError(f"'banned.{reason}': invalid regular expression {pattern!r}: {err}") from None


def _normalise_question(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


class PairFilter:
    """Applies ``FilterRules`` to the pairs of one reply, in order."""

    def __init__(self, rules: FilterRules) -> None:
        self.rules = rules
        self.banned = [
            (reason, re.compile(pattern, re.IGNORECASE))
            for reason, patterns in rules.banned.items()
            for pattern in patterns
        ]

    def reason(self, question: str, answer: str, seen: set[str]) -> str | None:
        """Why this pair is rejected, or None when it passes."""
        if not question.strip():
            return "empty_question"
        if not answer.strip():
            return "empty_answer"
        for name, text, (low, high) in (
            ("question", question, self.rules.question_words),
            ("answer", answer, self.rules.answer_words),
        ):
            if not low <= len(text.split()) <= high:
                return f"{name}_length"
        for reason, pattern in self.banned:
            if pattern.search(question) or pattern.search(answer):
                return reason
        if _normalise_question(question) in seen:
            return "duplicate_question"
        return None

    def apply(self, pairs: Iterable[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """(accepted pairs, rejected pairs each with a ``reason``)."""
        accepted: list[dict[str, str]] = []
        rejected: list[dict[str, str]] = []
        seen: set[str] = set()
        for pair in pairs:
            question, answer = str(pair.get("question", "")), str(pair.get("answer", ""))
            reason = self.reason(question, answer, seen)
            if reason is None and len(accepted) >= self.rules.max_pairs:
                reason = "extra_pair"
            if reason is None:
                seen.add(_normalise_question(question))
                accepted.append({"question": question, "answer": answer})
            else:
                rejected.append({"question": question, "answer": answer, "reason": reason})
        return accepted, rejected
