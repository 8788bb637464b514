"""Conversations as the model's contract says (``lavis.common.conversation``).

A single-turn model (the default, and CLOVER's and LAVIS's released checkpoints) answers each
question on its own with the conversation's image: earlier turns are not shown to it. A model
tuned on conversations gets the earlier turns folded into its instruction in its training
format, the oldest dropped first when the instruction would exceed the model's budget
(``max_txt_len`` tokens, counted with the LLM's tokenizer after the prompt template; the
Q-Former reads only the current question). ``history_override`` makes a single-turn model fold
history anyway, for experiments; it is logged.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from lavis.common.conversation import MULTI_TURN, ConversationContract, Turn

logger = logging.getLogger(__name__)


def apply_history_override(model: Any, history_format: str | None) -> ConversationContract:
    """The contract ``model`` answers by: its own, or ``history_format`` forced (``--history``;
    ``none`` makes any model answer each question alone). Logged, since the model was not
    necessarily trained that way."""
    own = model.conversation
    if history_format is None:
        return own
    if history_format == "none":
        forced = ConversationContract()
    else:
        forced = ConversationContract.from_dict({"mode": MULTI_TURN, "history_format": history_format}, "--history")
    if forced != own:
        logger.warning("--history %s: answering as %s although the model was tuned %s", history_format,
                       describe(forced), describe(own))
        model.cfg = dataclasses.replace(model.cfg, conversation=forced)
    return forced


def describe(contract: ConversationContract) -> str:
    """In words, for notices and logs."""
    if not contract.multi_turn:
        return "on single questions (each question is answered on its own; earlier turns are not used)"
    return f"on conversations (earlier turns folded in the {contract.history_format} format)"


class TokenBudget:
    """Counts an instruction's tokens as the model will see them (prompt template applied).

    It keeps its own copies of the tokenizers: the server counts on its event-loop thread while
    the model tokenizes on the generation thread, and a fast tokenizer must not be used by two
    threads at once. One ``TokenBudget`` is for one thread.
    """

    def __init__(self, model: Any) -> None:
        from lavis.models.llm.causal import CausalBridge

        bridge = model.bridge
        self.template: str = model.cfg.prompt
        self.limit: int = int(model.cfg.max_txt_len)
        self.queries: int = int(model.query_tokens.shape[1])
        self._llm = copy.deepcopy(bridge.tokenizer)
        # decoder-only: BOS is added by the bridge, the rest without special tokens (see CausalBridge)
        self._llm_extra = int(bridge.bos_id is not None) if isinstance(bridge, CausalBridge) else 0
        self._llm_special = not isinstance(bridge, CausalBridge)
        self._qformer = copy.deepcopy(model.tokenizer) if getattr(model, "QFORMER_TEXT", False) else None
        self._last: tuple[str, int] | None = None  # a query counts its instruction twice (fits, then its prompt tokens)

    def llm_tokens(self, instruction: str) -> int:
        if self._last is not None and self._last[0] == instruction:
            return self._last[1]
        prompt = self.template.format(instruction)
        count = len(self._llm(prompt, add_special_tokens=self._llm_special).input_ids) + self._llm_extra
        self._last = (instruction, count)
        return count

    def count(self, instruction: str) -> int:
        """The larger of the LLM's and the Q-Former's token counts (both are cut at ``limit``)."""
        prompt = self.template.format(instruction)
        counts = [self.llm_tokens(instruction)]
        if self._qformer is not None:
            counts.append(len(self._qformer(prompt).input_ids))
        return max(counts)

    def fits(self, instruction: str) -> bool:
        return self.count(instruction) <= self.limit


def fold_within(question: str, history: Sequence[Turn], budget: TokenBudget,
                contract: ConversationContract) -> tuple[str, list[Turn]]:
    """(instruction, earlier turns kept) under ``contract``: no turns for a single-turn model;
    else at most ``max_turns`` (what training showed), the oldest dropped until the instruction fits. The question itself is always
    kept; whether it fits alone is the caller's decision."""
    kept = list(history) if contract.multi_turn else []
    if contract.max_turns is not None:  # never more earlier turns than training showed
        kept = kept[len(kept) - contract.max_turns:] if len(kept) > contract.max_turns else kept
    while kept and budget.llm_tokens(contract.fold(question, kept)) > budget.limit:  # the LLM reads history
        kept.pop(0)
    return contract.instruction(question, kept), kept
