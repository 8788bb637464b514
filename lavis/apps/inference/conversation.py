"""Multi-turn conversations: earlier turns are folded
into one instruction, and dropped oldest first when the instruction would exceed the model's
instruction budget (``max_txt_len`` tokens, counted with both the LLM's and the Q-Former's
tokenizer after the model's prompt template is applied).

The template (docs/serving.md):

- no earlier turns: the question itself, exactly what evaluation feeds the model;
- with earlier turns: ``Q: {question 1} A: {answer 1} Q: {question 2} A: {answer 2} Q: {question}``.

The model's own prompt template (``model.prompt``, e.g. ``"Question: {} Short answer:"``) then
wraps the folded instruction, as it wraps a single question.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from lavis.common.conversation import MULTI_TURN, ConversationContract, Turn

fold = ConversationContract(MULTI_TURN, "qa_v1").fold  # today's fold for every model (the contract comes next)

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

    def llm_tokens(self, instruction: str) -> int:
        prompt = self.template.format(instruction)
        return len(self._llm(prompt, add_special_tokens=self._llm_special).input_ids) + self._llm_extra

    def count(self, instruction: str) -> int:
        """The larger of the LLM's and the Q-Former's token counts (both are cut at ``limit``)."""
        prompt = self.template.format(instruction)
        counts = [self.llm_tokens(instruction)]
        if self._qformer is not None:
            counts.append(len(self._qformer(prompt).input_ids))
        return max(counts)

    def fits(self, instruction: str) -> bool:
        return self.count(instruction) <= self.limit


def fold_within(question: str, history: Sequence[Turn], budget: TokenBudget) -> tuple[str, int]:
    """(instruction, earlier turns kept): the oldest turns are dropped until the instruction fits.

    The question itself is always kept; whether it fits alone is the caller's decision.
    """
    kept = list(history)
    while kept and not budget.fits(fold(question, kept)):
        kept.pop(0)
    return fold(question, kept), len(kept)
