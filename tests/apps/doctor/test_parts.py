"""Pieces of the doctor on their own: tokenizer/LLM mismatches, locating sources without
fetching, damaged files, and the largest batch the memory estimate allows."""

from __future__ import annotations

import json
import types

import torch
from safetensors.torch import save_file

from lavis.apps.doctor.weights import damaged, tokenizer_mismatches
from lavis.models.memory import GIB, MemoryEstimate
from lavis.models.sources import LOCAL, REMOTE, locate


class FakeTokenizer:
    """Just the attributes the check reads (a transformers tokenizer has the same ones)."""

    def __init__(self, size: int, eos: int, bos: int | None, pad: int | None) -> None:
        self.size, self.eos_token_id, self.bos_token_id, self.pad_token_id = size, eos, bos, pad
        self.eos_token = "</s>"

    def __len__(self) -> int:
        return self.size


def test_tokenizer_mismatches_name_each_problem():
    llm_cfg = types.SimpleNamespace(bos_token=None)
    config = {"vocab_size": 32000, "eos_token_id": 1, "bos_token_id": 0}
    problems = tokenizer_mismatches(FakeTokenizer(32001, eos=2, bos=1, pad=0), config, llm_cfg, "causal")
    assert any("32001 tokens but the model's embedding has 32000 rows" in p for p in problems)
    assert any("EOS id 2" in p and "says 1" in p for p in problems)
    assert any("BOS id 1" in p for p in problems)
    fine = {"vocab_size": 32000, "eos_token_id": [2], "bos_token_id": 1}
    assert tokenizer_mismatches(FakeTokenizer(32000, eos=2, bos=1, pad=None), fine, llm_cfg, "causal") == []
    t5 = {"vocab_size": 32128, "eos_token_id": 1, "decoder_start_token_id": 0}
    assert tokenizer_mismatches(FakeTokenizer(32100, eos=1, bos=None, pad=0), t5, llm_cfg, "seq2seq") == []
    assert "decoder starts with id 0" in tokenizer_mismatches(FakeTokenizer(32100, 1, None, 3), t5, llm_cfg,
                                                              "seq2seq")[0]


def test_locate_never_fetches_and_knows_legacy_hub_names(tmp_path):
    found = locate("bert-base-uncased", ["vocab.txt"], ask_size=False)
    assert found.kind == REMOTE and not found.files  # a Hub name, not "no such file"
    folder = tmp_path / "llm"
    folder.mkdir()
    save_file({"a": torch.zeros(2)}, str(folder / "model-00001-of-00002.safetensors"))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    found = locate(str(folder), ["model.safetensors.index.json"])
    assert found.kind == LOCAL and len(found.files) == 3
    assert "model-00002-of-00002.safetensors is missing" in damaged(found.files)
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    assert "unreadable or truncated" in damaged(found.files)


def test_largest_batch_is_the_last_that_fits():
    guess = MemoryEstimate(static=10 * GIB, per_sample=1.5 * GIB, mode="train")
    for capacity in (12, 24, 40, 80):
        largest = guess.largest_batch(capacity * GIB)
        assert guess.needed(largest) <= capacity * GIB < guess.needed(largest + 1)
    assert guess.largest_batch(8 * GIB) == 0
