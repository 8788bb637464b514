"""Tiny T5 / LLaMA folders load with the standard transformers calls, like the real checkpoints."""

from __future__ import annotations

import pytest
import torch

from lavis.common.errors import DataError
from lavis.models.llm import LLMConfig, load_llm, load_llm_tokenizer


def test_tiny_t5_folder(tiny_t5_dir):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_t5_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5_dir)
    ids = tokenizer("the tissue shows glands").input_ids
    assert ids[-1] == tokenizer.eos_token_id == 1 and tokenizer.pad_token_id == 0
    assert not any(t.startswith("<extra_id") for t in tokenizer.get_vocab())
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "the tissue shows glands"


def test_tiny_llama_folder_and_pad_fallback(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.vocab_size == len(tokenizer)
    ids = tokenizer("lymphocytes infiltrate the stroma").input_ids
    assert ids[0] == tokenizer.bos_token_id == 1 and tokenizer.eos_token_id == 2
    assert tokenizer.pad_token is None  # like Vicuna's own tokenizer
    ours = load_llm_tokenizer(LLMConfig(name_or_path=str(tiny_llama_dir)))
    assert ours.pad_token == ours.unk_token


def test_load_llm_is_frozen_in_the_requested_dtype(tiny_llama_dir):
    model = load_llm(LLMConfig(name_or_path=str(tiny_llama_dir), dtype="bf16"), "causal")
    assert not model.training
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in model.parameters())


def test_tokenizer_needs_text(tmp_path):
    from lavis.models.llm.tiny import train_sentencepiece

    with pytest.raises(DataError, match="no non-empty text"):
        train_sentencepiece(["", "  "], tmp_path, "t5")
