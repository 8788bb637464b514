"""LLaVA conversation records (``{id, image, conversations: [{from, value}, ...]}``), as both the
data loader and the LLaVA-Med scorer read them: some released test files spell the key
``conversatons``, and LLaVA-Med's own script accepts both."""

from __future__ import annotations

from typing import Any

CONVERSATION_KEYS = ("conversations", "conversatons")


def conversation_key(record: Any) -> str | None:
    """The spelling of the conversation key that ``record`` uses, or None when it has neither."""
    if not isinstance(record, dict):
        return None
    return next((key for key in CONVERSATION_KEYS if key in record), None)
