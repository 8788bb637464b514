"""Tiny language models for tests and the CPU demo: a sentencepiece tokenizer trained on the
given texts plus a randomly initialised T5 or LLaMA, saved in the standard transformers layout so
``from_pretrained(folder)`` (model and tokenizer) works exactly as for the real checkpoints.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch

from lavis.common.errors import DataError

# Special-token ids as in the real models: T5 (pad 0, eos 1, unk 2), LLaMA (unk 0, bos 1, eos 2).
_SPECIAL_IDS = {
    "t5": {"pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1},
    "llama": {"unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1},
}
_MODEL_FILE = {"t5": "spiece.model", "llama": "tokenizer.model"}


def train_sentencepiece(
    texts: Iterable[str], folder: str | os.PathLike, kind: Literal["t5", "llama"], vocab_size: int = 256,
    pieces: Literal["unigram", "bpe"] | None = None,
):
    """Train a sentencepiece model on ``texts`` and return the transformers tokenizer saved in ``folder``.

    T5 gets a unigram model (no sentinel ``<extra_id_*>`` tokens), LLaMA a BPE model that adds
    BOS to every input, as the real tokenizers do. ``pieces`` overrides the algorithm: on text with
    a small vocabulary (a few hundred distinct words) unigram training stops at about 150 pieces,
    mostly single letters ("Is" -> "I", "s"), where BPE keeps the words whole.
    """
    import sentencepiece as spm
    from transformers import LlamaTokenizer, T5Tokenizer

    lines = [line.strip() for line in texts if line and line.strip()]
    if not lines:
        raise DataError("train_sentencepiece: no non-empty text to train the tokenizer on")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_prefix=os.path.join(work, _MODEL_FILE[kind].removesuffix(".model")),
            vocab_size=vocab_size,
            model_type=pieces or ("unigram" if kind == "t5" else "bpe"),
            character_coverage=1.0,
            hard_vocab_limit=False,  # a small corpus may support fewer pieces than asked
            minloglevel=2,
            **_SPECIAL_IDS[kind],
        )
        os.remove(os.path.join(work, _MODEL_FILE[kind].replace(".model", ".vocab")))
        if kind == "t5":
            tokenizer = T5Tokenizer.from_pretrained(work, extra_ids=0)
        else:
            tokenizer = LlamaTokenizer.from_pretrained(work, add_bos_token=True, add_eos_token=False)
    tokenizer.save_pretrained(folder)
    return tokenizer


def _save(model, tokenizer, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_t5(
    folder: str | os.PathLike,
    texts: Iterable[str],
    d_model: int = 64,
    d_ff: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 256,
    seed: int = 0,
    pieces: Literal["unigram", "bpe"] = "unigram",
) -> Path:
    """A random FlanT5-style model (gated-GELU feed-forward) + its tokenizer (see
    :func:`train_sentencepiece` for ``pieces``)."""
    from transformers import T5Config, T5ForConditionalGeneration

    folder = Path(folder)
    tokenizer = train_sentencepiece(texts, folder, "t5", vocab_size, pieces)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // num_heads,
        d_ff=d_ff,
        num_layers=num_layers,
        num_decoder_layers=num_layers,
        num_heads=num_heads,
        feed_forward_proj="gated-gelu",
        # Tied, so T5 rescales the decoder output by d_model**-0.5: sane logits at random init.
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
    return _save(model, tokenizer, folder)


def save_tiny_llama(
    folder: str | os.PathLike,
    texts: Iterable[str],
    hidden_size: int = 64,
    intermediate_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 256,
    seed: int = 0,
    initializer_range: float = 0.1,
) -> Path:
    """A random LLaMA (the Vicuna architecture) + its tokenizer (BOS added, no pad token).

    ``initializer_range`` is larger than the real 0.02: at width 64 that would leave the output
    almost uniform whatever the input, so nothing upstream (a soft prefix) could steer it.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tokenizer = train_sentencepiece(texts, folder, "llama", vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return _save(model, tokenizer, folder)


def save_tiny_gpt2(
    folder: str | os.PathLike,
    texts: Iterable[str],
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 320,
    seed: int = 0,
    initializer_range: float = 0.1,
) -> Path:
    """A random GPT-2 (the architecture of BioMedLM, CLOVER's ``blip2_biomed_instruct`` LLM) + a
    byte-level BPE tokenizer trained on ``texts`` (``<|endoftext|>`` as BOS/EOS/unk, as GPT-2's)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    lines = [line.strip() for line in texts if line and line.strip()]
    if not lines:
        raise DataError("save_tiny_gpt2: no non-empty text to train the tokenizer on")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(lines, vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"],
                            show_progress=False)  # fmt: skip
    bpe.save_model(str(folder))
    tokenizer = GPT2TokenizerFast.from_pretrained(str(folder))  # transformers 5 ignores vocab_file=
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=hidden_size, n_layer=num_layers, n_head=num_heads, n_positions=512,
        initializer_range=initializer_range, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    return _save(model, tokenizer, folder)
