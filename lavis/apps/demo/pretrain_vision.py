"""Pretrain the demo's small image encoder CLIP-style, so the frozen ViT of stages 1-2 is honest.

EVA-CLIP (BLIP-2's frozen encoder) was trained contrastively against text. The demo does the
same at CPU scale: the ViT's class token is projected and pulled towards the real MiniLM
sentence embedding of its tile's caption (several tiles share a caption: all count as positives).
The text encoder stays frozen; the ViT, an image projection and a text projection learn (as in
CLIP); both projections are thrown away.

With ``prompts`` (attribute -> value -> text), each tile is also scored CLIP zero-shot style against
the texts of every value of each attribute it is labelled with ("H&E stained skin at low
magnification." against "... at high magnification."): a caption differs from its neighbours in
one phrase, and the caption loss alone left the power of a field hard to read (docs/demo.md).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from lavis.common.checkpoint import atomic_write_text
from lavis.common.errors import ConfigError
from lavis.models.blip2.losses import contrastive_loss
from lavis.models.vision.base import VISION_ENCODERS
from lavis.processors.base_processor import build_processor

logger = logging.getLogger(__name__)


@torch.no_grad()
def sentence_embeddings(texts: list[str], model_dir: str) -> torch.Tensor:
    """Mean-pooled, L2-normalised MiniLM embeddings (how sentence-transformers pools MiniLM)."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def pretrain_vision(
    items: list[dict[str, Any]],
    vision_cfg: dict[str, Any],
    processor_cfg: dict[str, Any],
    text_model_dir: str,
    out_file: str | Path,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    prompts: dict[str, dict[str, str]] | None = None,
    prompt_weight: float = 1.0,
) -> dict[str, float]:
    """Train on ``items`` (``{"image": PIL image, "caption": str}``, plus ``"labels"``
    (attribute -> value) when ``prompts`` is given); save the encoder weights."""
    if not items:
        raise ConfigError("pretrain_vision: no training images")
    torch.manual_seed(seed)
    captions = sorted({item["caption"] for item in items})
    caption_index = {c: i for i, c in enumerate(captions)}
    text = sentence_embeddings(captions, text_model_dir).to(device)  # (C, D) fixed targets
    prompt_term = AttributePrompts(items, prompts, text_model_dir, device) if prompts else None

    cls = VISION_ENCODERS.get(vision_cfg["name"])
    encoder = cls.from_config(cls.parse_config({**vision_cfg, "freeze": False, "pretrained": None, "precision": "fp32"}))
    head = nn.Sequential(nn.LayerNorm(encoder.num_features), nn.Linear(encoder.num_features, text.shape[1]))
    # CLIP's text projection: learnable, so captions that differ in one word can move apart.
    text_proj = nn.Linear(text.shape[1], text.shape[1], bias=False)
    nn.init.eye_(text_proj.weight)
    encoder, head, text_proj = encoder.to(device), head.to(device), text_proj.to(device)
    log_temp = nn.Parameter(torch.tensor(0.07, device=device).log())
    params = [*encoder.parameters(), *head.parameters(), *text_proj.parameters(), log_temp]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    augment = build_processor(processor_cfg, "demo.vision.processor")
    labels = torch.tensor([caption_index[item["caption"]] for item in items])
    # Batches draw a caption uniformly, then one of its tiles: a rare caption (low magnification,
    # DAB-negative) shapes the encoder as much as a common one.
    by_caption = [torch.nonzero(labels == c).flatten() for c in range(len(captions))]

    start, losses = time.time(), []
    encoder.train()
    for _ in tqdm(range(steps), desc="pretrain image encoder (CLIP-style)", dynamic_ncols=True, mininterval=1.0):
        chosen = torch.randint(0, len(captions), (batch_size,)).tolist()
        pick = torch.stack([by_caption[c][torch.randint(0, len(by_caption[c]), ())] for c in chosen])
        images = torch.stack([augment(items[int(i)]["image"]) for i in pick]).to(device)
        image_feat = F.normalize(head(encoder(images)[:, 0]), dim=-1)  # (B, D) from the class token
        ids = labels[pick].to(device)
        text_feat = F.normalize(text_proj(text[ids]), dim=-1)  # (B, D): each tile's caption embedding
        sim_i2t = image_feat @ text_feat.T / log_temp.exp()
        positive = ids[:, None] == ids[None, :]  # tiles sharing a caption are positives
        loss = contrastive_loss(sim_i2t, sim_i2t.T, positive, label_smoothing=0.0)
        if prompt_term is not None:
            loss = loss + prompt_weight * prompt_term.loss(image_feat, pick, text_proj, log_temp.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            log_temp.clamp_(min=torch.tensor(0.01).log())
        losses.append(float(loss.detach()))
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    save_file(state, str(out_file.with_suffix(".tmp")))
    out_file.with_suffix(".tmp").replace(out_file)
    first, last = sum(losses[:10]) / min(10, len(losses)), sum(losses[-10:]) / min(10, len(losses))
    logger.info("image encoder pretrained: loss %.3f -> %.3f in %.0fs", first, last, time.time() - start)
    summary = {"loss_first": first, "loss_last": last, "seconds": time.time() - start, "captions": len(captions)}
    # what was trained, beside the weights (lavis.apps.demo.diagnose rebuilds the encoder from it)
    atomic_write_text(out_file.with_suffix(".json"), json.dumps(
        {"encoder": dict(vision_cfg), "processor": dict(processor_cfg), "steps": steps, "batch_size": batch_size,
         "lr": lr, "seed": seed, "prompts": prompts, "prompt_weight": prompt_weight, **summary}, indent=1))
    return summary


class AttributePrompts:
    """Zero-shot-style classification against value texts: for every (tile, attribute) label, a
    softmax over the attribute's value texts, the labelled one the target."""

    def __init__(self, items: list[dict[str, Any]], prompts: dict[str, dict[str, str]], text_model_dir: str,
                 device: str) -> None:
        texts = [text for values in prompts.values() for text in values.values()]
        self.embeddings = sentence_embeddings(texts, text_model_dir).to(device)  # (T, D)
        index, start = {}, 0
        for attribute, values in prompts.items():
            index[attribute] = {value: start + i for i, value in enumerate(values)}
            start += len(values)
        # per item: (rows of its attributes' value texts, position of the true one) per labelled attribute
        self.targets = [[(list(index[a].values()), list(index[a]).index(v))
                         for a, v in item.get("labels", {}).items() if a in index and v in index[a]]
                        for item in items]

    def loss(self, image_feat: torch.Tensor, picked: torch.Tensor, text_proj: nn.Module,
             temperature: torch.Tensor) -> torch.Tensor:
        text_feat = F.normalize(text_proj(self.embeddings), dim=-1)  # (T, D)
        # one cross-entropy per (tile, attribute); attributes may have any number of values
        losses = [-F.log_softmax(image_feat[row] @ text_feat[rows].T / temperature, dim=-1)[true]
                  for row, item in enumerate(picked.tolist()) for rows, true in self.targets[item]]
        return torch.stack(losses).mean() if losses else image_feat.new_zeros(())
