"""A model's conversation contract: how it was instruction-tuned, and the one history format.

A model tuned on single questions (CLOVER's and LAVIS's released checkpoints, and every model
whose config says nothing) answers each question on its own: whatever serves it passes the
conversation's image and the current question, never the earlier turns. A model tuned on
conversations names the history format it was trained with; training and serving both fold
earlier turns into its instruction through :func:`fold`, so the model meets at inference
exactly the text it learned from.

The contract lives in the model config (``model.conversation``), in every checkpoint's
provenance record (``lavis.common.provenance``), in exports and model cards, and in
``/v1/models``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lavis.common.errors import ConfigError

SINGLE_TURN = "single_turn"
MULTI_TURN = "multi_turn"


@dataclasses.dataclass(frozen=True)
class Turn:
    """One earlier exchange: what the user asked and what the model answered."""

    question: str
    answer: str


def _qa_v1(question: str, history: Sequence[Turn]) -> str:
    """``Q: {q1} A: {a1} Q: {q2} A: {a2} Q: {question}``; no history: the question itself."""
    if not history:
        return question
    earlier = " ".join(f"Q: {turn.question} A: {turn.answer}" for turn in history)
    return f"{earlier} Q: {question}"


HISTORY_FORMATS: dict[str, Callable[[str, Sequence[Turn]], str]] = {"qa_v1": _qa_v1}


@dataclasses.dataclass(frozen=True)
class ConversationContract:
    """``mode``: ``single_turn`` (no history format) or ``multi_turn`` (``history_format`` names
    the fold used in training; ``max_turns``: the most earlier turns a training sample held)."""

    mode: str = SINGLE_TURN
    history_format: str | None = None
    max_turns: int | None = None

    def validate(self) -> None:
        if self.mode not in (SINGLE_TURN, MULTI_TURN):
            raise ConfigError(f"mode {self.mode!r}: expected {SINGLE_TURN} or {MULTI_TURN}")
        if self.mode == SINGLE_TURN and (self.history_format or self.max_turns):
            raise ConfigError("a single_turn model has no history_format or max_turns")
        if self.mode == MULTI_TURN and self.history_format not in HISTORY_FORMATS:
            raise ConfigError(f"history_format {self.history_format!r} is not a known format "
                              f"(known: {', '.join(sorted(HISTORY_FORMATS))})")
        if self.max_turns is not None and self.max_turns < 1:
            raise ConfigError(f"max_turns {self.max_turns}: expected >= 1")

    @property
    def multi_turn(self) -> bool:
        return self.mode == MULTI_TURN

    def instruction(self, question: str, history: Sequence[Turn] = ()) -> str:
        """What the model reads for ``question``: earlier turns folded in for a multi-turn model;
        the question alone for a single-turn one (it was never trained with history)."""
        return self.fold(question, history) if self.multi_turn else question

    def fold(self, question: str, history: Sequence[Turn] = ()) -> str:
        """The instruction for ``question`` after ``history`` (oldest first), in this model's format.
        A single-turn model never sees history: passing some is a caller's error."""
        if not history:
            return question
        if not self.multi_turn:
            raise ValueError("a single-turn model answers each question on its own: pass no history")
        return HISTORY_FORMATS[self.history_format](question, history)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "model.conversation") -> ConversationContract:
        """From a config section or a stored record; absent means single-turn."""
        if not data:
            return cls()
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} (known: mode, history_format, max_turns)")
        contract = cls(**dict(data))
        try:
            contract.validate()
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        return contract


def turns_of(value: Any, where: str = "history") -> list[Turn]:
    """Earlier turns from a sample's ``history``: ``Turn``s or ``{question, answer}`` mappings
    (the instruction files' layout), oldest first; None or empty: no earlier turns."""
    if not value:
        return []
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: expected a list of {{question, answer}} turns, got {type(value).__name__}")
    turns = []
    for i, turn in enumerate(value):
        if isinstance(turn, Turn):
            turns.append(turn)
            continue
        if not isinstance(turn, Mapping) or not isinstance(turn.get("question"), str) \
                or not isinstance(turn.get("answer"), str):
            raise ValueError(f"{where}[{i}]: expected {{question: str, answer: str}}, got {turn!r}")
        turns.append(Turn(turn["question"], turn["answer"]))
    return turns


def contract_of_record(record: Mapping[str, Any] | None) -> ConversationContract:
    """The contract in a checkpoint's provenance record (absent: single-turn, as every checkpoint
    written before contracts existed, and every LAVIS / CLOVER release, was tuned)."""
    return ConversationContract.from_dict((record or {}).get("conversation"), "checkpoint conversation record")
