"""Stage 1 (``blip2``): frozen image encoder + Q-Former trained with ITC, ITM and ITG.

- ITC: the 32 query outputs and the text [CLS], projected to 256-d and L2-normalised; an
  image-text score is the best query's similarity; cross-entropy both ways with label smoothing
  0.1 against all texts/images of the world batch. The gathered features keep their gradient
  (``itc_gather_grad``), so a step is the same for any number of processes; LAVIS gathers them
  without, which drops the other ranks' share of each pair's gradient. Samples with the same
  ``image_id`` are positives; without ids each sample is its own.
- ITM: one hard negative text per image and one hard negative image per text, drawn from the
  ITC softmax with positives masked; the match head is averaged over the query positions.
- ITG: the Q-Former decodes the caption with ``[DEC]`` first, reading the queries through the
  cached keys/values of the ITC pass (queries see queries; text sees queries and earlier text).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lavis.common.dist import all_gather_no_grad, all_gather_with_grad, get_rank
from lavis.common.errors import DataError
from lavis.models.base_model import MODELS, register_model
from lavis.models.blip2.base import Blip2Base, Blip2Config
from lavis.models.blip2.losses import contrastive_loss, sample_hard_negatives


@dataclasses.dataclass
class Blip2QformerConfig(Blip2Config):
    embed_dim: int = 256
    max_txt_len: int = 32
    label_smoothing: float = 0.1
    # ITC features from other ranks carry gradient back to them (the loss's exact gradient, the same
    # for any world size); false reproduces LAVIS, which gathers them without gradient.
    itc_gather_grad: bool = True


@dataclasses.dataclass
class Blip2Features:
    """``extract_features`` output; fields not asked for by ``mode`` stay None."""

    image_embeds: torch.Tensor | None = None  # (B, Q, H) query outputs
    image_embeds_proj: torch.Tensor | None = None  # (B, Q, E) projected, L2-normalised
    text_embeds: torch.Tensor | None = None  # (B, T, H); [CLS] at position 0
    text_embeds_proj: torch.Tensor | None = None  # (B, T, E) projected, L2-normalised
    multimodal_embeds: torch.Tensor | None = None  # (B, Q, H) queries that also read the text


@register_model("blip2")
class Blip2Qformer(Blip2Base):
    Config: ClassVar[type] = Blip2QformerConfig
    MODEL_TYPES: ClassVar[dict[str, str]] = {
        "pretrain": "models/blip2/pretrain.yaml",
        "tiny": "models/blip2/tiny.yaml",
        "demo": "models/blip2/demo.yaml",
    }
    QFORMER_LM_HEAD: ClassVar[bool] = True

    def __init__(self, cfg: Blip2QformerConfig, load_weights: bool = True) -> None:
        super().__init__(cfg, load_weights=load_weights)
        hidden = cfg.qformer.hidden_size
        self.vision_proj = nn.Linear(hidden, cfg.embed_dim)
        self.text_proj = nn.Linear(hidden, cfg.embed_dim)
        self.itm_head = nn.Linear(hidden, 2)
        self.temp = nn.Parameter(torch.tensor(0.07))

    # ---- pieces -----------------------------------------------------------------------------
    def _image_ids(self, samples: Mapping[str, Any], batch: int) -> torch.Tensor:
        ids = samples.get("image_id")
        if ids is None:  # every sample its own positive; offset by rank so ids are world-unique
            return torch.arange(batch, device=self.device) + get_rank() * batch
        if isinstance(ids, Sequence) and not isinstance(ids, torch.Tensor):
            if any(not isinstance(i, int) for i in ids):
                raise DataError(f"samples['image_id'] must hold integers (ITC positives), got {list(ids)[:4]}")
        ids = torch.as_tensor(ids, device=self.device).view(-1)
        if ids.numel() != batch or ids.is_floating_point():
            raise DataError(f"samples['image_id'] must be {batch} integers, got {tuple(ids.shape)} {ids.dtype}")
        return ids.long()

    def _text_features(self, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.Qformer.bert(input_ids, mask).last_hidden_state
        return hidden, F.normalize(self.text_proj(hidden), dim=-1)

    def _itm_logits(self, image_embeds: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        queries = self.query_output(image_embeds, input_ids, mask).last_hidden_state
        return self.itm_head(queries[:, : self.query_tokens.shape[1]]).mean(dim=1)

    # ---- training -----------------------------------------------------------------------------
    def forward(self, samples: dict[str, Any]) -> dict[str, torch.Tensor]:
        image_embeds = self.image_embeds(samples)
        batch = image_embeds.shape[0]
        input_ids, mask = self.tokenize(samples["text_input"], self.cfg.max_txt_len, pad_to_max=True)
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)

        query_out = self.query_output(image_embeds, use_cache=True)
        image_feats = F.normalize(self.vision_proj(query_out.last_hidden_state), dim=-1)  # (B, Q, E)
        _, text_proj = self._text_features(input_ids, mask)
        text_feat = text_proj[:, 0]  # (B, E)

        # ---- ITC ----
        ids = self._image_ids(samples, batch)
        ids_all = all_gather_no_grad(ids)
        gather = all_gather_with_grad if self.cfg.itc_gather_grad else all_gather_no_grad
        image_feats_all = gather(image_feats)  # (N, Q, E)
        text_feat_all = gather(text_feat)  # (N, E)
        sim_i2t = torch.einsum("bqe,ne->bnq", image_feats, text_feat_all).amax(dim=-1) / self.temp
        sim_t2i = torch.einsum("be,nqe->bnq", text_feat, image_feats_all).amax(dim=-1) / self.temp
        positive = ids[:, None] == ids_all[None, :]
        loss_itc = contrastive_loss(sim_i2t, sim_t2i, positive, self.cfg.label_smoothing)

        # ---- ITM ----
        ids_world = all_gather_no_grad(input_ids)
        mask_world = all_gather_no_grad(mask)
        image_embeds_world = all_gather_with_grad(image_embeds)
        neg_image, has_neg_image = sample_hard_negatives(sim_t2i, positive)  # per text
        neg_text, has_neg_text = sample_hard_negatives(sim_i2t, positive)  # per image
        itm_ids = torch.cat([input_ids, input_ids, ids_world[neg_text]], dim=0)
        itm_mask = torch.cat([mask, mask, mask_world[neg_text]], dim=0)
        itm_images = torch.cat([image_embeds, image_embeds_world[neg_image], image_embeds], dim=0)
        labels = torch.cat(
            [
                torch.ones(batch, dtype=torch.long, device=self.device),
                torch.where(has_neg_image, 0, -100),
                torch.where(has_neg_text, 0, -100),
            ]
        )
        loss_itm = F.cross_entropy(self._itm_logits(itm_images, itm_ids, itm_mask).float(), labels)

        # ---- ITG ----
        decoder_ids = input_ids.clone()
        decoder_ids[:, 0] = self.tokenizer.bos_token_id
        loss_lm = self.Qformer.lm_loss(decoder_ids, mask, query_out.past_key_values, self.cfg.label_smoothing)

        return {"loss": loss_itc + loss_itm + loss_lm, "loss_itc": loss_itc, "loss_itm": loss_itm, "loss_lm": loss_lm}

    # ---- retrieval / feature extraction -------------------------------------------------------
    @torch.no_grad()
    def extract_features(
        self, samples: Mapping[str, Any], mode: Literal["image", "text", "multimodal"] = "multimodal"
    ) -> Blip2Features:
        """Unimodal features for ITC retrieval (``image`` / ``text``) or the text-aware queries."""
        if mode not in ("image", "text", "multimodal"):
            raise ValueError(f"mode must be 'image', 'text' or 'multimodal', got {mode!r}")
        out = Blip2Features()
        if mode in ("text", "multimodal"):
            if samples.get("text_input") is None:
                raise DataError(f"extract_features(mode={mode!r}) needs samples['text_input']")
            input_ids, mask = self.tokenize(samples["text_input"], self.cfg.max_txt_len)
        if mode == "text":
            out.text_embeds, out.text_embeds_proj = self._text_features(input_ids, mask)
            return out
        image_embeds = self.image_embeds(samples)
        if mode == "image":
            out.image_embeds = self.query_output(image_embeds).last_hidden_state
            out.image_embeds_proj = F.normalize(self.vision_proj(out.image_embeds), dim=-1)
        else:
            hidden = self.query_output(image_embeds, input_ids, mask).last_hidden_state
            out.multimodal_embeds = hidden[:, : self.query_tokens.shape[1]]
        return out

    @torch.no_grad()
    def itm_score(self, image: torch.Tensor, text: Sequence[str]) -> torch.Tensor:
        """P(match) per (image, text) pair; ``image`` is (B, 3, H, W) pixels or (B, N, D) ``image_embeds``."""
        key = "image_embeds" if image.dim() == 3 else "image"
        image_embeds = self.image_embeds({key: image})
        input_ids, mask = self.tokenize(text, self.cfg.max_txt_len)
        return self._itm_logits(image_embeds, input_ids, mask).float().softmax(dim=-1)[:, 1]

    @torch.no_grad()
    def itc_similarity(self, image: torch.Tensor, text: Sequence[str]) -> torch.Tensor:
        """(num_images, num_texts) ITC similarity (best query), for retrieval ranking."""
        key = "image_embeds" if image.dim() == 3 else "image"
        image_feats = self.extract_features({key: image}, mode="image").image_embeds_proj
        text_feats = self.extract_features({"text_input": list(text)}, mode="text").text_embeds_proj[:, 0]
        return torch.einsum("iqe,te->itq", image_feats, text_feats).amax(dim=-1)


# LAVIS registers this class under these names too (feature extraction, image-text matching), so
# ``load_model("blip2_feature_extractor", "pretrain")`` works as it does there.
MODELS.add_alias("blip2_feature_extractor", "blip2")
MODELS.add_alias("blip2_image_text_matching", "blip2")
