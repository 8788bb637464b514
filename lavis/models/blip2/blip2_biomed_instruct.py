"""CLOVER's ``blip2_biomed_instruct``: InstructBLIP with a GPT-2 LLM (BioMedLM, stanford-crfm/BioMedLM).

CLOVER's repository registers it beside the Vicuna and FlanT5 models: instruction-aware
Q-Former (queries and instruction read by the Q-Former, no ``Qformer.cls``), ``llm_proj``
(768 -> 2560) and a frozen ``GPT2LMHeadModel`` as ``llm_model``, so its checkpoints hold
``Qformer.bert.*``, ``query_tokens``, ``ln_vision.*``, ``llm_proj.*``, ``llm_model.transformer.*``
and ``llm_model.lm_head.weight`` - our names. Here it runs through the same decoder-only path as
``blip2_vicuna_instruct``: [queries; BOS + instruction; answer + EOS], loss on the answer.

CLOVER's own code differs, and is not reproduced: its ``forward`` puts the instruction (right
padded, no BOS) before the queries and also takes the loss on the instruction tokens, and its
``generate`` cannot run (it tokenises the prompt with the BERT tokenizer and calls an undefined
``self.proj``). A checkpoint trained with CLOVER's forward loads here with every tensor in
place, but was trained on another token order.
"""

from __future__ import annotations

from typing import ClassVar

from lavis.models.base_model import register_model
from lavis.models.blip2.blip2_vicuna_instruct import Blip2VicunaInstruct


@register_model("blip2_biomed_instruct")
class Blip2BiomedInstruct(Blip2VicunaInstruct):
    """Instruction-aware queries + any GPT-2 ``AutoModelForCausalLM`` (BioMedLM): the Vicuna
    model's path and names, its own model types."""

    MODEL_TYPES: ClassVar[dict[str, str]] = {
        "biomed": "models/blip2_biomed_instruct/biomed.yaml",
        "tiny": "models/blip2_biomed_instruct/tiny.yaml",
    }
