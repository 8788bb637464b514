"""InstructBLIP / CLOVER with a decoder-only LLM (Vicuna, or any LLaMA-family causal LM)."""

from __future__ import annotations

from typing import ClassVar

from lavis.models.base_model import register_model
from lavis.models.blip2.stage2 import Blip2LLMBase


@register_model("blip2_vicuna_instruct")
class Blip2VicunaInstruct(Blip2LLMBase):
    """[queries; BOS + instruction; answer + EOS] through ``llm_model``; loss on the answer only."""

    MODEL_TYPES: ClassVar[dict[str, str]] = {
        "vicuna7b": "models/blip2_vicuna_instruct/vicuna7b.yaml",
        "tiny": "models/blip2_vicuna_instruct/tiny.yaml",
    }
    LLM_KIND: ClassVar[str] = "causal"
    LLM_ATTR: ClassVar[str] = "llm_model"
    PROJ_ATTR: ClassVar[str] = "llm_proj"
