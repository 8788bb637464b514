"""The BLIP-2 / CLOVER family: stage 1 (``blip2``) and stage 2 (T5 and decoder-only LLMs, plain and
instruct, CLOVER's GPT-2 ``blip2_biomed_instruct`` among them)."""

from lavis.models.blip2.base import Blip2Base, Blip2Config  # noqa: F401
from lavis.models.blip2.blip2_biomed_instruct import Blip2BiomedInstruct  # noqa: F401
from lavis.models.blip2.blip2_llm import Blip2LLM  # noqa: F401
from lavis.models.blip2.blip2_qformer import Blip2Features, Blip2Qformer, Blip2QformerConfig  # noqa: F401
from lavis.models.blip2.blip2_t5 import Blip2T5, Blip2T5Instruct  # noqa: F401
from lavis.models.blip2.blip2_vicuna_instruct import Blip2VicunaInstruct  # noqa: F401
from lavis.models.blip2.checkpoint import CheckpointReport  # noqa: F401
from lavis.models.blip2.stage2 import Blip2LLMBase, Blip2LLMConfig  # noqa: F401
