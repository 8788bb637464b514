"""What every BLIP-2 model shares: the frozen image encoder + ``ln_vision``, the learned queries,
the Q-Former and its tokenizer, the frozen-feature path, and checkpoint loading.

Precision: the encoder runs in its own dtype (``vision.precision``) under no grad; ``ln_vision``
and the Q-Former keep fp32 weights and follow whatever autocast the runner opens.
``ln_vision`` trains by default, as in every LAVIS BLIP-2 model (``train_ln_vision``). The feature
cache therefore stores the encoder output *before* ``ln_vision`` (``encode_image_frozen``), and
``image_embeds`` applies ``ln_vision`` to pixels and cached features alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lavis.common.errors import ConfigError, DataError
from lavis.models.base_model import BaseModel, BaseModelConfig
from lavis.models.blip2.checkpoint import CheckpointReport, load_state_into, read_state_dict
from lavis.models.compiled_blocks import COMPILE_MODES, compile_blocks
from lavis.models.llm.loading import precision
from lavis.models.qformer import QFormer, QFormerConfig, load_bert_weights, load_qformer_tokenizer
from lavis.models.vision.base import VISION_ENCODERS, VisionEncoder


@dataclasses.dataclass
class Blip2Config(BaseModelConfig):
    """Keys every BLIP-2 model section has."""

    # The image encoder's own config (validated by that encoder's ``parse_config``); ``name`` picks it.
    vision: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "eva_clip_g"})
    qformer: QFormerConfig = dataclasses.field(default_factory=QFormerConfig)
    # Weights to start from, loaded with strict=False before ``checkpoint`` (e.g. a stage-1
    # ``blip2_pretrained.pth`` for a stage-2 model: its heads are skipped, the projection stays new).
    init_checkpoint: str | None = None
    # Processor configs for ``load_model_and_preprocess`` (``vis_processor`` / ``text_processor``).
    preprocess: dict[str, Any] = dataclasses.field(default_factory=dict)
    # LayerNorm epsilon of ``ln_vision``: LAVIS uses 1e-5; Hugging Face BLIP-2 applies the vision
    # config's ``layer_norm_eps`` (1e-6) there, which ``lavis.models.from_hf`` copies.
    ln_vision_eps: float = 1e-5
    # LAVIS trains ``ln_vision`` in stage 1 and stage 2 (only the ViT is frozen); false freezes it.
    train_ln_vision: bool = True
    # The optimised step: torch.compile the repeated blocks of the ViT, Q-Former and LLM in place
    # (same math, same parameter names; see lavis.models.compiled_blocks). ``compile_mode`` is
    # torch's: default | reduce-overhead (CUDA graphs) | max-autotune | max-autotune-no-cudagraphs.
    compile: bool = False
    compile_mode: str = "default"

    def validate(self) -> None:
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(f"'compile_mode' must be one of {list(COMPILE_MODES)}, got {self.compile_mode!r}")
        if not isinstance(self.vision.get("name"), str):
            raise ConfigError("'vision.name' must name a registered vision encoder (e.g. eva_clip_g)")
        # the encoder's own keys, checked now (not when the model is built, nor never for --print-config)
        VISION_ENCODERS.get(self.vision["name"]).parse_config(dict(self.vision), where="model.vision")
        if self.ln_vision_eps <= 0:
            raise ConfigError(f"'ln_vision_eps' must be > 0, got {self.ln_vision_eps}")


# What a config user can do when model.checkpoint (evaluate.py --checkpoint) lacks trainable
# tensors, e.g. a stage-1 checkpoint given to a stage-2 model: name the keys, not Python options.
CHECKPOINT_HINT = (
    "model.checkpoint (evaluate.py --checkpoint) must hold every trainable tensor of this model: use a "
    "checkpoint trained with it; to start training from a partial one, such as a stage-1 checkpoint for a "
    "stage-2 model, set model.init_checkpoint instead"
)


def encoder_builds_without_weights(cfg: Any) -> bool:
    """Whether the encoder config stays valid with ``pretrained=None``. ``hf_clip`` (PLIP) does
    not: its architecture is read from the checkpoint's config.json, so it keeps ``pretrained``."""
    validate = getattr(dataclasses.replace(cfg, pretrained=None), "validate", None)
    try:
        if callable(validate):
            validate()
    except ConfigError:
        return False
    return True


def build_vision_encoder(mapping: Mapping[str, Any], load_weights: bool) -> VisionEncoder:
    encoder_cls = VISION_ENCODERS.get(mapping["name"])
    cfg = encoder_cls.parse_config(dict(mapping), where="model.vision")
    if not load_weights and getattr(cfg, "pretrained", None) is not None and encoder_builds_without_weights(cfg):
        cfg = dataclasses.replace(cfg, pretrained=None)
    encoder = encoder_cls.from_config(cfg)
    if getattr(cfg, "freeze", True):
        encoder.requires_grad_(False)
        encoder.eval()
    return encoder


class Blip2Base(BaseModel):
    """Subclasses set ``Config``, ``MODEL_TYPES`` and how the Q-Former is built."""

    Config: ClassVar[type] = Blip2Config
    QFORMER_TEXT: ClassVar[bool] = True  # word/position embeddings and text feed-forward
    QFORMER_LM_HEAD: ClassVar[bool] = False  # ``Qformer.cls`` (stage 1's ITG)
    QFORMER_TRUNCATION: ClassVar[str] = "right"  # instructions keep their end (LAVIS: left)

    def __init__(self, cfg: Blip2Config, load_weights: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual_encoder = build_vision_encoder(cfg.vision, load_weights)
        width = self.visual_encoder.num_features
        self.ln_vision = nn.LayerNorm(width, eps=cfg.ln_vision_eps)
        self.ln_vision.requires_grad_(cfg.train_ln_vision)
        qcfg = cfg.qformer
        self.query_tokens = nn.Parameter(torch.zeros(1, qcfg.num_query_tokens, qcfg.hidden_size))
        nn.init.normal_(self.query_tokens, mean=0.0, std=qcfg.initializer_range)
        self.Qformer = QFormer(qcfg, width, text=self.QFORMER_TEXT, lm_head=self.QFORMER_LM_HEAD)
        # A strict ``checkpoint`` replaces every trainable tensor: BERT would be read for nothing.
        if load_weights and qcfg.pretrained and not cfg.checkpoint:
            load_bert_weights(self.Qformer, qcfg.pretrained)
        self._tokenizer = None

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | Any, load_weights: bool = True, **build: Any) -> Blip2Base:
        """Build from a config mapping / dataclass.

        ``load_weights=False`` reads nothing from disk (no BERT, encoder, LLM or checkpoint
        weights): use it under ``torch.device("meta")`` to count parameters at full size.
        """
        cfg = cls.parse_config(cfg)
        model = cls(cfg, load_weights=load_weights, **build)
        if load_weights:
            if cfg.init_checkpoint:
                model.load_checkpoint(cfg.init_checkpoint, strict=False)
            if cfg.checkpoint:
                model.load_checkpoint(cfg.checkpoint, strict=True, missing_hint=CHECKPOINT_HINT)
        if cfg.compile:
            compile_blocks(model, cfg.compile_mode)
        return model

    def load_checkpoint(self, path: str, strict: bool = True, missing_hint: str | None = None) -> CheckpointReport:
        """Load our safetensors weights, a LAVIS ``.pth`` (BLIP-2 / InstructBLIP / CLOVER) or a
        Hugging Face BLIP-2 state dict; see :mod:`lavis.models.blip2.checkpoint` and
        :mod:`lavis.models.interop.layouts` (how LAVIS and HF keys map to ours)."""
        from lavis.models.interop.layouts import to_our_layout  # interop imports this module

        hint = {"missing_hint": missing_hint} if missing_hint else {}
        state = to_our_layout(self, read_state_dict(path))
        self.fit_to_checkpoint(state, str(path))
        return load_state_into(self, state, str(path), strict=strict, **hint)

    def fit_to_checkpoint(self, state: Mapping[str, torch.Tensor], source: str) -> None:
        """Adapt the model to what a checkpoint legitimately holds before loading it (no-op here)."""

    # ---- frozen parts stay in eval mode -----------------------------------------------------
    def frozen_modules(self) -> list[nn.Module]:
        return [] if self.visual_encoder.trainable else [self.visual_encoder]

    def train(self, mode: bool = True) -> Blip2Base:
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    # ---- Q-Former tokenizer (loaded on first use, so meta-device builds need no files) -----
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_qformer_tokenizer(self.cfg.qformer.tokenizer, self.QFORMER_TRUNCATION)
        return self._tokenizer

    def tokenize(self, texts: Sequence[str], max_length: int, pad_to_max: bool = False):
        """(input_ids, attention_mask) on the model's device."""
        enc = self.tokenizer(
            list(texts),
            padding="max_length" if pad_to_max else "longest",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        return enc.input_ids.to(self.device), enc.attention_mask.to(self.device)

    # ---- images -----------------------------------------------------------------------------
    def _vision_features(self, image: torch.Tensor) -> torch.Tensor:
        image = image.to(self.device)  # the encoder casts it to its own dtype
        with precision(image.device.type, self.visual_encoder.dtype):
            return self.visual_encoder(image)

    @torch.no_grad()
    def encode_image_frozen(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, N, D) output of the frozen encoder, *before* ``ln_vision``, in
        the encoder's dtype: what the feature cache stores (``ln_vision`` may train)."""
        return self._vision_features(image)

    def image_embeds(self, samples: Mapping[str, Any]) -> torch.Tensor:
        """``ln_vision`` over ``samples["image_embeds"]`` (encoder output from the feature cache) or
        over the encoded ``samples["image"]``; float32."""
        if samples.get("image_embeds") is not None:
            features = torch.as_tensor(samples["image_embeds"]).to(self.device)
            width = self.visual_encoder.num_features
            if features.dim() != 3 or features.shape[-1] != width:
                raise DataError(
                    f"samples['image_embeds'] must be (batch, tokens, {width}) for this vision encoder, "
                    f"got {tuple(features.shape)}"
                )
        elif samples.get("image") is None:
            raise DataError("the batch has neither 'image' nor 'image_embeds'")
        elif torch.is_grad_enabled() and self.visual_encoder.trainable:  # (the check walks every weight)
            features = self._vision_features(samples["image"])  # vision.freeze=false: the encoder trains too
        else:
            features = self.encode_image_frozen(samples["image"])
        return self.ln_vision(features.float()).float()

    def query_output(
        self,
        image_embeds: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        use_cache: bool = False,
    ):
        """The Q-Former over [queries; optional text] reading ``image_embeds``."""
        queries = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        return self.Qformer.bert(
            input_ids, text_mask, query_embeds=queries, image_embeds=image_embeds, use_cache=use_cache
        )
