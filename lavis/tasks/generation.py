"""Generation settings shared by the evaluation tasks (VQA, captioning): all in config.

Defaults are CLOVER's evaluation config: beam search 5, at most 40 and at least 5 new tokens;
``length_penalty: null`` means the model's own default (-1 for T5, 0 for decoder-only LLMs).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class GenerationConfig:
    num_beams: int = 5
    max_new_tokens: int = 40
    min_new_tokens: int = 5
    length_penalty: float | None = None
    repetition_penalty: float = 1.0
    use_nucleus_sampling: bool = False  # off: deterministic beam search
    top_p: float = 0.9
    temperature: float = 1.0

    def kwargs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
