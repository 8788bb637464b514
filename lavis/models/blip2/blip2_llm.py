"""BLIP-2 with a decoder-only LLM and no instruction-aware Q-Former (``blip2_llm``).

This is what Hugging Face ``Blip2ForConditionalGeneration`` holds with an OPT or LLaMA-family
language model (``Salesforce/blip2-opt-2.7b`` and friends) and what LAVIS calls ``blip2_opt``:
the queries alone summarise the image (the Q-Former is built without its text-only parts, as for
BLIP-2 T5), and the LLM reads [queries; BOS + prompt] (+ answer + EOS when training).
Parameter names: ``llm_proj`` / ``llm_model`` (LAVIS's ``opt_proj`` / ``opt_model`` load into them).

Model types: ``pretrain_opt2.7b`` (LAVIS's BLIP-2 OPT-2.7b weights) and ``tiny``; any other
checkpoint comes in through :func:`lavis.models.from_hf` or a LAVIS ``blip2_opt`` ``.pth``.
"""

from __future__ import annotations

from typing import ClassVar

from lavis.models.base_model import MODELS, register_model
from lavis.models.blip2.stage2 import Blip2LLMBase


@register_model("blip2_llm")
class Blip2LLM(Blip2LLMBase):
    """BLIP-2 (queries only in the Q-Former) + any ``AutoModelForCausalLM`` (OPT, LLaMA, Vicuna)."""

    MODEL_TYPES: ClassVar[dict[str, str]] = {
        "pretrain_opt2.7b": "models/blip2_llm/pretrain_opt2.7b.yaml",
        "tiny": "models/blip2_llm/tiny.yaml",
    }
    QFORMER_TEXT: ClassVar[bool] = False
    LLM_KIND: ClassVar[str] = "causal"
    LLM_ATTR: ClassVar[str] = "llm_model"
    PROJ_ATTR: ClassVar[str] = "llm_proj"


MODELS.add_alias("blip2_opt", "blip2_llm")  # LAVIS's name (its opt_proj / opt_model load into ours)
