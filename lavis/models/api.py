"""Load a registered model by (arch, model_type), LAVIS-style, optionally with its processors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lavis.common.errors import ConfigError
from lavis.models.base_model import MODELS, BaseModel


def model_config(arch: str, model_type: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The validated ``Config`` of ``configs/models/<arch>/<model_type>.yaml`` with ``overrides``
    merged in (nested mappings merge key by key, e.g. ``{"llm": {"name_or_path": folder}}``)."""
    from omegaconf import OmegaConf

    model_cls = MODELS.get(arch)
    path = model_cls.default_config_path(model_type)
    raw = OmegaConf.load(path)
    if "model" not in raw:
        raise ConfigError(f"{path}: expected a top-level 'model:' section")
    section = raw.model
    if MODELS.canonical(section.get("arch", arch)) != MODELS.canonical(arch):  # LAVIS aliases name our class
        raise ConfigError(f"{path}: model.arch is {section.get('arch')!r}, expected {MODELS.canonical(arch)!r}")
    if section.get("model_type", model_type) != model_type:
        raise ConfigError(f"{path}: model.model_type is {section.get('model_type')!r}, expected {model_type!r}")
    merged = OmegaConf.merge(section, OmegaConf.create(dict(overrides or {})))
    return model_cls.parse_config(merged, "model")


# ``load_model``'s checkpoint when the caller names none: the YAML's (None means "load none").
YAML_CHECKPOINT = "<the model_type YAML's checkpoint>"


def load_model(
    arch: str,
    model_type: str,
    checkpoint: str | None = YAML_CHECKPOINT,
    device: str | torch.device = "cpu",
    is_eval: bool = False,
    **overrides: Any,
) -> BaseModel:
    """Build ``arch`` with ``model_type``'s defaults. ``checkpoint``: left out, the YAML's; a path
    replaces it; None loads none (CLOVER's ``checkpoint: null`` + ``init_checkpoint`` flow:
    ``load_model("blip2_vicuna_instruct", "vicuna7b", checkpoint=None, init_checkpoint=stage1)``).

    ``overrides`` are config keys, e.g. ``load_model("blip2_t5_instruct", "tiny",
    llm={"name_or_path": folder}, qformer={"tokenizer": vocab_folder})``. ``arch`` may be LAVIS's
    name (``blip2_opt``, ``blip2_feature_extractor``, ``blip2_image_text_matching``).
    """
    if checkpoint != YAML_CHECKPOINT:
        overrides["checkpoint"] = checkpoint
    cfg = model_config(arch, model_type, overrides)
    model = MODELS.get(arch).from_config(cfg)
    model = model.to(device)
    return model.eval() if is_eval else model


def load_preprocess(preprocess: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{vis_processor: {train, eval}, text_processor: {train, eval}}`` -> two {split: processor} dicts."""
    from lavis.processors import build_processor  # processors may register later than models

    out = []
    for kind in ("vis_processor", "text_processor"):
        section = dict(preprocess.get(kind) or {})
        out.append({split: build_processor(cfg, f"model.preprocess.{kind}.{split}") for split, cfg in section.items()})
    return out[0], out[1]


def load_model_and_preprocess(
    name: str, model_type: str, is_eval: bool = True, device: str | torch.device = "cpu", **overrides: Any
) -> tuple[BaseModel, dict[str, Any], dict[str, Any]]:
    """``(model, vis_processors, txt_processors)``; processors keyed by split (``train`` / ``eval``)."""
    model = load_model(name, model_type, device=device, is_eval=is_eval, **overrides)
    vis_processors, txt_processors = load_preprocess(getattr(model.cfg, "preprocess", {}) or {})
    return model, vis_processors, txt_processors
