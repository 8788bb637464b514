"""BLIP-2 and InstructBLIP / CLOVER with a FlanT5 encoder-decoder (``t5_model``, ``t5_proj``)."""

from __future__ import annotations

from typing import ClassVar

from lavis.models.base_model import register_model
from lavis.models.blip2.stage2 import Blip2LLMBase


@register_model("blip2_t5")
class Blip2T5(Blip2LLMBase):
    """BLIP-2: the queries alone summarise the image; the instruction goes to T5 only.

    As in LAVIS, the Q-Former's text-only parts (word/position embeddings, text feed-forward,
    LM head) are not built: the queries never meet text here.
    """

    MODEL_TYPES: ClassVar[dict[str, str]] = {
        "pretrain_flant5xl": "models/blip2_t5/pretrain_flant5xl.yaml",
        "tiny": "models/blip2_t5/tiny.yaml",
    }
    QFORMER_TEXT: ClassVar[bool] = False


@register_model("blip2_t5_instruct")
class Blip2T5Instruct(Blip2LLMBase):
    """InstructBLIP / CLOVER (FlanT5): the instruction also enters the Q-Former."""

    MODEL_TYPES: ClassVar[dict[str, str]] = {
        "flant5xl": "models/blip2_t5_instruct/flant5xl.yaml",
        "tiny": "models/blip2_t5_instruct/tiny.yaml",
        "demo": "models/blip2_t5_instruct/demo.yaml",
    }
