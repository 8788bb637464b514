"""One batch, two forms: strings for our model, the same token ids for Hugging Face's.

Our model tokenises inside ``forward`` (that cost is part of our step); HF's takes ids. Both get
ids from the same tokenizers, so sequence lengths are identical on both sides.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from benchmarks.sizes import CORPUS, ModelSize
from lavis.models.llm.bridge import IGNORE  # the label the loss skips; importable from here too


@dataclasses.dataclass
class Batch:
    images: torch.Tensor
    prompts: list[str]
    answers: list[str]

    def ours(self) -> dict[str, Any]:
        return {"image": self.images, "text_input": self.prompts, "text_output": self.answers}

    def cached(self, image_embeds: torch.Tensor) -> dict[str, Any]:
        return {"image_embeds": image_embeds, "text_input": self.prompts, "text_output": self.answers}


def make_batch(size: ModelSize, batch: int, prompt_words: int, answer_words: int, seed: int = 0) -> Batch:
    """Random images; prompts/answers of a fixed word count drawn from the corpus vocabulary."""
    generator = torch.Generator().manual_seed(seed)
    words = sorted({w for line in CORPUS for w in line.split()})

    def sentence(count: int) -> str:
        picks = torch.randint(len(words), (count,), generator=generator).tolist()
        return " ".join(words[i] for i in picks)

    side = size.vision.image_size
    images = torch.randn(batch, 3, side, side, generator=generator)
    return Batch(images, [sentence(prompt_words) for _ in range(batch)], [sentence(answer_words) for _ in range(batch)])


def hf_inputs(ours: Any, batch: Batch, image_token_id: int, with_labels: bool = True) -> dict[str, torch.Tensor]:
    """InstructBLIP inputs made with our model's tokenizers (same ids, same lengths as ours sees)."""
    queries = ours.query_tokens.shape[1]
    enc = ours.tokenizer(
        batch.prompts, padding="longest", truncation=True, max_length=ours.cfg.max_txt_len, return_tensors="pt"
    )
    bridge = ours.bridge
    ids, mask = bridge.tokenize(batch.prompts, bridge.max_input, "left")
    ids, mask = ids.cpu(), mask.cpu()
    placeholders = torch.full((ids.shape[0], queries), image_token_id, dtype=ids.dtype)
    inputs = {
        "pixel_values": batch.images,
        "qformer_input_ids": enc.input_ids,
        "qformer_attention_mask": enc.attention_mask,
        "input_ids": torch.cat([placeholders, ids], dim=1),
        "attention_mask": torch.cat([torch.ones_like(placeholders), mask], dim=1),
    }
    if with_labels:
        labels, label_mask = bridge.tokenize(batch.answers, bridge.max_output, "right")
        inputs["labels"] = labels.cpu().masked_fill(label_mask.cpu() == 0, IGNORE)
        inputs["decoder_attention_mask"] = label_mask.cpu()
    return inputs


def token_lengths(inputs: dict[str, torch.Tensor]) -> dict[str, int]:
    """Sequence lengths of a HF batch (reported beside the timings)."""
    out = {"qformer_text": int(inputs["qformer_input_ids"].shape[1]), "lm_input": int(inputs["input_ids"].shape[1])}
    if "labels" in inputs:
        out["answer"] = int(inputs["labels"].shape[1])
    return out
