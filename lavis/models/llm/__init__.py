"""Frozen language models for stage 2: loading, the prefix bridges (seq2seq / causal), tiny LMs."""

from lavis.models.llm.bridge import GenerationOptions, LanguageBridge  # noqa: F401
from lavis.models.llm.causal import CausalBridge  # noqa: F401
from lavis.models.llm.loading import LLMConfig, load_llm, load_llm_tokenizer, precision  # noqa: F401
from lavis.models.llm.seq2seq import Seq2SeqBridge  # noqa: F401
