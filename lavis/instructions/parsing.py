"""Turn a chat model's reply into question/answer pairs.

Models drift between output styles, so three are accepted, tried in this order:
1. a JSON object ``{"pairs": [{"question": ..., "answer": ...}]}`` (or a bare JSON list of pairs),
   possibly wrapped in a Markdown code fence or surrounded by chatter;
2. CLOVER's original line format: ``question: "..."`` and ``answer: "..."`` lines (numbering,
   bullets, ``Q:``/``A:`` and multi-line answers tolerated).
A reply cut off by the token limit is never trusted, even when part of it would parse.
"""

from __future__ import annotations

import json
import re
from typing import Any


class ReplyParseError(ValueError):
    """The reply holds no usable pairs; ``reason`` is a short machine-readable cause."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
_INLINE_ANSWER = re.compile(r"(?<=[\"”?.!])\s+(?=\**answer\**\s*[:：])", re.IGNORECASE)
_LINE = re.compile(
    r"^\s*(?:[-*•]\s*|\d+\s*[.)]\s*|#+\s*)*\**(question|answer|q|a)\**\s*\d*\s*\**\s*[:：]\s*\**\s*(.*)$",
    re.IGNORECASE,
)


def _clean(text: str) -> str:
    text = " ".join(text.split())
    for _ in range(2):  # strip a trailing comma then surrounding quotes, as in `"...",`
        text = text.rstrip(",").strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
            text = text[1:-1].strip()
        elif len(text) >= 2 and text[0] in "“" and text[-1] in "”":
            text = text[1:-1].strip()
    return text


def _pairs_from_json(value: Any) -> list[dict[str, str]] | None:
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        if "pairs" in lowered:
            value = lowered["pairs"]
        elif "question" in lowered and "answer" in lowered:
            value = [value]
        else:
            lists = [v for v in value.values() if isinstance(v, list)]
            if len(lists) != 1:
                return None
            value = lists[0]
    if not isinstance(value, list):
        return None
    pairs = []
    for item in value:
        if not isinstance(item, dict):
            return None
        lowered = {str(k).lower(): v for k, v in item.items()}
        question, answer = lowered.get("question", lowered.get("q")), lowered.get("answer", lowered.get("a"))
        if question is None and answer is None:
            return None
        pairs.append({"question": _clean(str(question or "")), "answer": _clean(str(answer or ""))})
    return pairs


def _json_candidates(text: str) -> list[Any]:
    """Every JSON value found: the whole text, each fenced block, else the value opening at the first { or [."""
    found = []
    blocks = [text] + [m.group(1) for m in _FENCE.finditer(text)]
    decoder = json.JSONDecoder()
    for block in blocks:
        block = block.strip()
        try:
            found.append(json.loads(block))
            continue
        except json.JSONDecodeError:
            pass
        for opener in "{[":  # only the outermost value: never salvage pieces of a broken reply
            start = block.find(opener)
            if start >= 0:
                try:
                    found.append(decoder.raw_decode(block, start)[0])
                except json.JSONDecodeError:
                    pass
    return found


def _pairs_from_lines(text: str) -> list[dict[str, str]]:
    pairs: list[dict[str, str]] = []
    field, buffer = None, []

    def flush() -> None:
        if field is None:
            return
        value = _clean(" ".join(buffer))
        if field == "question":
            pairs.append({"question": value, "answer": ""})
        elif pairs and not pairs[-1]["answer"]:
            pairs[-1]["answer"] = value
        else:  # an answer without its question: keep it visible to the filter
            pairs.append({"question": "", "answer": value})

    text = _INLINE_ANSWER.sub("\n", text.replace("```", "\n"))
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            flush()
            field = "question" if match.group(1).lower() in ("question", "q") else "answer"
            buffer = [match.group(2)]
        elif field is not None and line.strip():
            buffer.append(line.strip())
    flush()
    return pairs


def parse_reply(content: str | None, finish_reason: str | None = None) -> list[dict[str, str]]:
    """The pairs in ``content``; raises ``ReplyParseError`` when there are none or the reply was cut off."""
    if finish_reason == "length":
        raise ReplyParseError("truncated", "the reply hit the max_tokens limit")
    if finish_reason == "content_filter":
        raise ReplyParseError("content_filter", "the provider withheld the reply")
    if content is None or not content.strip():
        raise ReplyParseError("empty_reply")
    for value in _json_candidates(content):
        pairs = _pairs_from_json(value)
        if pairs:
            return pairs
    pairs = _pairs_from_lines(content)
    if pairs:
        return pairs
    snippet = " ".join(content.split())[:120]
    raise ReplyParseError("unparseable", f"no JSON pairs or question/answer lines in {snippet!r}")
