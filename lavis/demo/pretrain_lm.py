"""Pretrain the demo's small language model on the demo's text, then it is frozen (as FlanT5 is).

CLOVER freezes a language model that already understands instructions. At CPU scale there is
none to download, so the demo makes one: a FlanT5-architecture model (our tiny builder) trained
to answer each training question when the tile's caption is written before it. In stage 2 the
caption is gone: the Q-Former's query embeddings, prepended in its place, must carry what the
image shows. The model never sees an image here.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from lavis.models.llm.tiny import save_tiny_t5

logger = logging.getLogger(__name__)


def pretrain_lm(
    instructions: list[dict[str, Any]],
    out_dir: str | Path,
    d_model: int = 128,
    d_ff: int = 256,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 512,
    steps: int = 600,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
) -> dict[str, float]:
    """``instructions``: records with ``caption, question, answer``. Saves model + tokenizer."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    out_dir = Path(out_dir)
    corpus = sorted({t for r in instructions for t in (r["caption"], r["question"], r["answer"])})
    save_tiny_t5(out_dir, corpus * 4, d_model=d_model, d_ff=d_ff, num_layers=num_layers,
                 num_heads=num_heads, vocab_size=vocab_size, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = T5ForConditionalGeneration.from_pretrained(out_dir)
    pairs = [(f"{r['caption']} {r['question']}", r["answer"]) for r in instructions]
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    start, losses = time.time(), []
    for _ in tqdm(range(steps), desc="pretrain language model on demo text", dynamic_ncols=True, mininterval=1.0):
        batch = rng.sample(pairs, min(batch_size, len(pairs)))
        inputs = tokenizer([p for p, _ in batch], padding=True, truncation=True, max_length=96, return_tensors="pt")
        labels = tokenizer([a for _, a in batch], padding=True, truncation=True, max_length=48, return_tensors="pt").input_ids
        labels[labels == tokenizer.pad_token_id] = -100
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss))
    model.save_pretrained(out_dir)
    first, last = sum(losses[:10]) / min(10, len(losses)), sum(losses[-10:]) / min(10, len(losses))
    logger.info("language model pretrained: loss %.3f -> %.3f in %.0fs", first, last, time.time() - start)
    return {"loss_first": first, "loss_last": last, "seconds": time.time() - start,
            "params": sum(p.numel() for p in model.parameters())}
