"""Translate between a Hugging Face ``Blip2Config`` / ``InstructBlipConfig`` and our model configs.

HF -> ours picks the arch (BLIP-2 or InstructBLIP, T5 or decoder-only LM) and copies every
architecture number; ours -> HF builds the config an exported checkpoint is loaded with.
Only the EVA ViT-g encoder has an HF counterpart (``Blip2VisionModel``).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from lavis.common.errors import ConfigError
from lavis.common.image_norm import CLIP_MEAN, CLIP_STD
from lavis.models.llm.loading import DTYPES

logger = logging.getLogger(__name__)

HF_MODEL_TYPES = ("blip-2", "instructblip")
# (HF model_type, decoder-only LM) -> our arch.
ARCHS = {
    ("blip-2", False): "blip2_t5",
    ("blip-2", True): "blip2_llm",
    ("instructblip", False): "blip2_t5_instruct",
    ("instructblip", True): "blip2_vicuna_instruct",
}
QFORMER_TOKENIZER_DIR = "qformer_tokenizer"  # where InstructBlipProcessor saves the BERT tokenizer


def read_hf_config(folder: Path) -> Any:
    """The ``Blip2Config`` / ``InstructBlipConfig`` in ``folder/config.json``."""
    from transformers import AutoConfig

    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"'{folder}' has no config.json: not a Hugging Face checkpoint folder")
    try:
        config = AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot be read as a transformers config ({err})") from err
    if config.model_type not in HF_MODEL_TYPES:
        raise ConfigError(
            f"{path}: model_type is '{config.model_type}'; from_hf reads {' / '.join(HF_MODEL_TYPES)} "
            "(Blip2ForConditionalGeneration, InstructBlipForConditionalGeneration)"
        )
    return config


def arch_for(config: Any) -> str:
    return ARCHS[(config.model_type, not config.text_config.is_encoder_decoder)]


def dtype_name(dtype: str | torch.dtype | None, config: Any) -> str:
    """Our dtype name (bf16/fp16/fp32) for ``dtype``; None = the checkpoint's (fp32 if unrecorded)."""
    if dtype is None:
        recorded = _as_name(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None))
        return recorded or "fp32"
    name = _as_name(dtype)
    if name is None:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)} (or the torch dtype), got {dtype!r}")
    return name


def _as_name(dtype: str | torch.dtype | None) -> str | None:
    if isinstance(dtype, str):
        if dtype in DTYPES:
            return dtype
        dtype = getattr(torch, dtype.removeprefix("torch."), None)
    return next((name for name, value in DTYPES.items() if value == dtype), None)


def _side(size: Any, where: str) -> int:
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ConfigError(f"{where}: non-square size {size} is not supported")
        size = size[0]
    return int(size)


def vision_mapping(vision: Any, precision: str, where: str) -> dict[str, Any]:
    """Our ``eva_clip_g`` section for HF's ``Blip2VisionConfig`` / ``InstructBlipVisionConfig``."""
    if vision.hidden_act != "gelu" or not vision.qkv_bias:
        raise ConfigError(
            f"{where}.vision_config: hidden_act={vision.hidden_act!r}, qkv_bias={vision.qkv_bias}; the EVA "
            "encoder here is the BLIP-2 one (exact GELU, q/v biases)"
        )
    return {
        "name": "eva_clip_g",
        "image_size": _side(vision.image_size, f"{where}.vision_config.image_size"),
        "patch_size": _side(vision.patch_size, f"{where}.vision_config.patch_size"),
        "width": vision.hidden_size,
        "depth": vision.num_hidden_layers,
        "heads": vision.num_attention_heads,
        # timm sizes the MLP as int(width * ratio): +0.5 keeps float rounding off the boundary.
        "mlp_ratio": (vision.intermediate_size + 0.5) / vision.hidden_size,
        "layer_norm_eps": vision.layer_norm_eps,
        "precision": precision,
        "freeze": True,
        "pretrained": None,
    }


def qformer_mapping(config: Any, tokenizer: str) -> dict[str, Any]:
    q = config.qformer_config
    return {
        "num_query_tokens": config.num_query_tokens,
        "hidden_size": q.hidden_size,
        "num_layers": q.num_hidden_layers,
        "num_heads": q.num_attention_heads,
        "intermediate_size": q.intermediate_size,
        "cross_attention_freq": q.cross_attention_frequency,
        "vocab_size": q.vocab_size,
        "max_position_embeddings": q.max_position_embeddings,
        "layer_norm_eps": q.layer_norm_eps,
        "hidden_dropout": q.hidden_dropout_prob,
        "attention_dropout": q.attention_probs_dropout_prob,
        "hidden_act": q.hidden_act,
        "initializer_range": q.initializer_range,
        "pretrained": None,
        "tokenizer": tokenizer,
    }


def preprocess_mapping(folder: Path, image_size: int) -> dict[str, Any]:
    """Our processors matching the checkpoint's ``BlipImageProcessor`` (size, mean, std)."""
    from transformers import AutoImageProcessor

    mean, std, size = CLIP_MEAN, CLIP_STD, image_size
    try:
        processor = AutoImageProcessor.from_pretrained(str(folder))
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
        size = _side(processor.size.get("height", image_size), f"{folder}: image processor size")
    except (OSError, ValueError, AttributeError) as err:
        logger.warning("%s: no readable image processor (%s); using CLIP mean/std at %d px", folder, err, image_size)
    image = {"image_size": size, "mean": list(mean), "std": list(std)}
    return {
        "vis_processor": {"train": {"name": "pathology_image_train", **image}, "eval": {"name": "pathology_image_eval", **image}},
        "text_processor": {"train": {"name": "pathology_question", "max_words": 0}, "eval": {"name": "pathology_question", "max_words": 0}},
    }


def our_mapping(config: Any, folder: Path, dtype: str) -> dict[str, Any]:
    """The ``model:`` section of our config for the HF checkpoint in ``folder``."""
    where = str(folder / "config.json")
    arch = arch_for(config)
    vision = vision_mapping(config.vision_config, dtype, where)
    tokenizer = str(folder / QFORMER_TOKENIZER_DIR) if config.model_type == "instructblip" else "bert-base-uncased"
    return {
        "arch": arch,
        "model_type": "hf",
        "vision": vision,
        "qformer": qformer_mapping(config, tokenizer),
        # HF normalises the encoder output with post_layernorm, whose eps is the vision config's.
        "ln_vision_eps": config.vision_config.layer_norm_eps,
        # The LM's tokenizer sits at the top of the folder; its weights come in with the rest.
        "llm": {"name_or_path": str(folder), "dtype": dtype},
        "prompt": "{}",  # HF feeds the text as given
        "preprocess": preprocess_mapping(folder, vision["image_size"]),
    }


# ---- ours -> HF ---------------------------------------------------------------------------------
def portable_text_config(llm_config: Any) -> Any:
    """A copy of the LLM's config, checked to load back as the same config.

    Our ``config_overrides`` are set on the live config (e.g. FlanT5's exact-GELU
    ``dense_act_fn: gelu``, as LAVIS trained it); a transformers release that re-derived such a
    field from another one on load (T5 once derived ``dense_act_fn`` from ``feed_forward_proj``)
    would silently change the exported model, so that is an error here instead.
    """
    config = copy.deepcopy(llm_config)
    saved = config.to_dict()
    reloaded = type(config).from_dict(saved).to_dict()
    changed = sorted(k for k in saved if k in reloaded and reloaded[k] != saved[k] and not k.startswith("_"))
    if changed:
        raise ConfigError(
            f"the LLM's {type(config).__name__} does not survive a save/load round trip in this transformers "
            f"release ({', '.join(f'{k}: {saved[k]!r} -> {reloaded[k]!r}' for k in changed)}); an export would "
            "compute something else"
        )
    return config


def hf_config_for(model: Any, image_token_index: int, text_vocab_size: int) -> Any:
    """The ``Blip2Config`` / ``InstructBlipConfig`` of an export of ``model``."""
    from transformers import Blip2Config, InstructBlipConfig

    from lavis.models.vision.eva_vit import EvaVisionTransformer

    encoder = model.visual_encoder
    if not isinstance(encoder, EvaVisionTransformer):
        raise ConfigError(
            f"to_hf exports the EVA ViT-g encoder (HF's Blip2VisionModel); this model uses "
            f"'{model.cfg.vision['name']}', which Hugging Face BLIP-2 cannot hold"
        )
    vision = type(encoder).parse_config(model.cfg.vision)
    if model.ln_vision.eps != vision.layer_norm_eps:
        logger.warning(
            "HF BLIP-2 normalises the encoder output with the vision eps (%g); this model's ln_vision "
            "uses %g (LAVIS's value). Outputs differ by about eps / feature variance (below 1e-5 at full size).",
            vision.layer_norm_eps, model.ln_vision.eps,
        )
    q = model.cfg.qformer
    text = portable_text_config(model.llm.config)
    text.vocab_size = text_vocab_size
    config_cls = InstructBlipConfig if model.QFORMER_TEXT else Blip2Config
    return config_cls(
        vision_config={
            "hidden_size": vision.width,
            "intermediate_size": encoder.blocks[0].mlp.fc1.out_features,
            "num_hidden_layers": len(encoder.blocks),
            "num_attention_heads": vision.heads,
            "image_size": vision.image_size,
            "patch_size": vision.patch_size,
            "hidden_act": "gelu",
            "layer_norm_eps": vision.layer_norm_eps,
            "qkv_bias": True,
        },
        qformer_config={
            "vocab_size": q.vocab_size,
            "hidden_size": q.hidden_size,
            "num_hidden_layers": q.num_layers,
            "num_attention_heads": q.num_heads,
            "intermediate_size": q.intermediate_size,
            "hidden_act": q.hidden_act,
            "hidden_dropout_prob": q.hidden_dropout,
            "attention_probs_dropout_prob": q.attention_dropout,
            "max_position_embeddings": q.max_position_embeddings,
            "initializer_range": q.initializer_range,
            "layer_norm_eps": q.layer_norm_eps,
            "cross_attention_frequency": q.cross_attention_freq,
            "encoder_hidden_size": vision.width,
        },
        text_config=text.to_dict(),
        num_query_tokens=q.num_query_tokens,
        image_token_index=image_token_index,
    )
