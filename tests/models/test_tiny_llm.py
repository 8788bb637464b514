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


def test_bpe_pieces_keep_the_words_of_a_small_vocabulary_whole(tmp_path):
    """On text of a few dozen distinct words unigram training falls back to letters; BPE pieces
    (the demo's language model) keep the words whole, and the T5 tokenizer reads them back."""
    from transformers import AutoTokenizer

    from lavis.models.llm.tiny import train_sentencepiece

    words = "is this tissue dense loose large small stained with the tile section here how packed".split()
    texts = [f"{a.capitalize()} {b} {c} {d}?" for a in words for b in words for c in words[:5] for d in words[:3]]
    lengths = {}
    for pieces in ("unigram", "bpe"):
        train_sentencepiece(texts, tmp_path / pieces, "t5", vocab_size=256, pieces=pieces)
        tokenizer = AutoTokenizer.from_pretrained(tmp_path / pieces)
        ids = tokenizer("Is this tissue dense?").input_ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == "Is this tissue dense?"
        lengths[pieces] = sum(len(ids) for ids in tokenizer(texts).input_ids) / len(texts)
    assert lengths["bpe"] < 0.8 * lengths["unigram"], lengths
