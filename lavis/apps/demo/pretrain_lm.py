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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
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
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    per_answer_loss: bool = True,
    device: str = "cpu",
    each_step: Callable[[int], None] | None = None,
    pieces: str = "unigram",
) -> dict[str, float]:
    """``instructions``: records with ``caption, question, answer``. Saves model + tokenizer.
    ``each_step(steps_done)`` runs after every optimiser step (the demo uses it to take back a core)."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    out_dir = Path(out_dir)
    corpus = sorted({t for r in instructions for t in (r["caption"], r["question"], r["answer"])})
    # ``pieces``: T5's unigram by default; the demo takes BPE (configs/demo/pipeline.yaml, lm.pieces)
    save_tiny_t5(out_dir, corpus * 4, d_model=d_model, d_ff=d_ff, num_layers=num_layers,
                 num_heads=num_heads, vocab_size=vocab_size, seed=seed, pieces=pieces)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = T5ForConditionalGeneration.from_pretrained(out_dir).to(device)
    # Every distinct (caption, question, answer) once: thousands of tiles share a few captions, and a
    # common caption must not crowd out a rare one. Tokenised once: the loop only gathers and pads.
    examples = sorted({(r["caption"], r["question"], r["answer"]) for r in instructions})
    # No truncation: a prompt is a caption, earlier turns and the question last; cutting its end
    # would train the model to answer a question it cannot see.
    prompts = tokenizer([f"{caption} {question}" for caption, question, _ in examples]).input_ids
    answers = tokenizer([answer for _, _, answer in examples]).input_ids
    pad = tokenizer.pad_token_id
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    start, losses = time.time(), []
    batches = length_grouped_batches(prompts, batch_size, rng)
    for step in tqdm(range(steps), desc="pretrain language model on demo text", dynamic_ncols=True, mininterval=1.0):
        pick = next(batches)
        input_ids = pad_sequence([torch.tensor(prompts[i]) for i in pick], batch_first=True, padding_value=pad).to(device)
        labels = pad_sequence([torch.tensor(answers[i]) for i in pick], batch_first=True, padding_value=-100).to(device)
        logits = model(input_ids=input_ids, attention_mask=input_ids.ne(pad), labels=labels).logits
        loss = answer_loss(logits, labels, per_answer_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.detach())
        if each_step is not None:
            each_step(step + 1)
    model.cpu().save_pretrained(out_dir)
    first, last = float(torch.stack(losses[:10]).mean()), float(torch.stack(losses[-10:]).mean())
    logger.info("language model pretrained: loss %.3f -> %.3f in %.0fs", first, last, time.time() - start)
    return {"loss_first": first, "loss_last": last, "seconds": time.time() - start,
            "params": sum(p.numel() for p in model.parameters()), "examples": len(examples)}


def answer_loss(logits: torch.Tensor, labels: torch.Tensor, per_answer: bool) -> torch.Tensor:
    """Cross-entropy over answer tokens. ``per_answer``: each answer's mean, then the batch mean, so a
    one-word answer ("loose") weighs as much as a 15-token description; otherwise the plain mean
    over tokens, where long descriptions (copied captions, easy) drown the short answers."""
    losses = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="none")
    losses = losses.view(labels.shape)
    mask = labels.ne(-100)
    if not per_answer:
        return losses.sum() / mask.sum().clamp(min=1)
    return ((losses * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


def length_grouped_batches(lengths_of: list[list[int]], batch_size: int, rng: random.Random,
                           pool: int = 16) -> Iterator[list[int]]:
    """Endless random batches of indices, each of prompts of similar length: ``pool`` batches' worth
    drawn at random, sorted by length, cut into batches that come out in random order. Prompts run
    from 10 to over 130 tokens (a folded conversation); a batch padded to its longest costs about
    twice what grouped ones do, and the answers still mix attributes (they do not set the length)."""
    size = min(batch_size, len(lengths_of))
    while True:
        drawn = sorted(rng.sample(range(len(lengths_of)), min(size * pool, len(lengths_of))),
                       key=lambda i: len(lengths_of[i]))
        batches = [drawn[k : k + size] for k in range(0, len(drawn) - size + 1, size)]
        rng.shuffle(batches)
        yield from batches
