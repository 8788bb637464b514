"""Multi-turn instructions: conversations about one image, each turn a training sample.

A conversation of k turns becomes k records; turn i carries the i earlier ``{question, answer}``
turns as ``history`` (oldest first). Every answer of the conversation carries the loss once, with
the reference turns before it as context (teacher forcing, as LLaVA trains on conversations):
a T5 decoder's target is one answer, and turn i's sample is exactly what a model tuned on
conversations meets when the user asks its i-th question. A model's ``model.conversation``
contract decides whether the history is folded into its instruction (multi-turn) or dropped
(single-turn: every turn is then a plain question).

- ``chain_into_conversations``: deterministic template questions about one image, shuffled and
  cut into conversations of 2-4 turns (seeded per image);
- ``carry_history``: instructions that already form a conversation in order (a chat model asked
  for one, ``conversation: true`` in the generation protocol) get the earlier turns as history.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

DEFAULT_TURNS = (2, 4)


def _by_image(items: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(str(item["caption_id"]), []).append(item)
    return groups


def _with_history(turns: Sequence[dict[str, Any]], conversation_id: str) -> list[dict[str, Any]]:
    out = []
    for index, item in enumerate(turns):
        history = [{"question": t["question"], "answer": t["answer"]} for t in turns[:index]]
        out.append({**item, "conversation_id": conversation_id, "turn": index, "history": history})
    return out


def chain_into_conversations(items: Iterable[dict[str, Any]], turns: tuple[int, int] = DEFAULT_TURNS,
                             seed: int = 0) -> list[dict[str, Any]]:
    """Each image's instructions in a seeded order, cut into conversations of ``turns[0]`` to
    ``turns[1]`` turns (a last piece shorter than ``turns[0]`` joins the conversation before it
    when that stays within ``turns[1]``, else stands alone)."""
    low, high = turns
    if not 1 <= low <= high:
        raise ValueError(f"conversation turns {turns}: expected 1 <= min <= max")
    out = []
    for caption_id, group in _by_image(items).items():
        rng = random.Random(f"{seed}:{caption_id}")
        order = rng.sample(group, len(group))
        pieces: list[list[dict[str, Any]]] = []
        while order:
            size = rng.randint(low, high)
            pieces.append(order[:size])
            order = order[size:]
        if len(pieces) > 1 and len(pieces[-1]) < low and len(pieces[-2]) + len(pieces[-1]) <= high:
            last = pieces.pop()
            pieces[-1] = pieces[-1] + last
        for number, piece in enumerate(pieces):
            out += _with_history(piece, f"{caption_id}:c{number}")
    return out


def carry_history(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Instructions already in conversation order per image: one conversation per image."""
    out = []
    for caption_id, group in _by_image(items).items():
        out += _with_history(group, f"{caption_id}:c0")
    return out


def conversations_of(items: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Records grouped back into their conversations (turn order); single records stand alone."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(item.get("conversation_id") or f"single:{item['id']}", []).append(item)
    return [sorted(group, key=lambda item: item.get("turn", 0)) for group in groups.values()]
