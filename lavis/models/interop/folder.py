"""Our self-describing model folder: what ``python -m lavis.models.convert --to ours`` writes.

- ``config.yaml``: the model's full ``model:`` section (arch, architecture numbers, prompt,
  processors); relative paths in it are resolved against the folder.
- ``model.safetensors``: every tensor except the LLM's (trainable parts, ``ln_vision`` and the
  image encoder), loaded as the model's strict ``checkpoint``.
- ``llm/``: the language model and its tokenizer, written only when they have no other source
  (a model converted from a Hugging Face BLIP-2 checkpoint, whose LLM lives inside it);
  otherwise ``llm.name_or_path`` keeps pointing at the hub id / folder it came from.
- ``qformer_tokenizer/``: the Q-Former's WordPiece tokenizer, for instruction-aware models.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lavis.common.checkpoint import atomic_write_text
from lavis.common.errors import ConfigError
from lavis.common.schema import to_dict
from lavis.models.base_model import MODELS
from lavis.models.blip2.base import Blip2Base, encoder_builds_without_weights
from lavis.models.interop.hf_config import HF_MODEL_TYPES, QFORMER_TOKENIZER_DIR
from lavis.models.vision.base import VISION_ENCODERS

CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "model.safetensors"
LLM_DIR = "llm"
# Config keys holding paths, resolved against the folder when relative and present there.
_PATH_KEYS = (("checkpoint",), ("llm", "name_or_path"), ("qformer", "tokenizer"), ("vision", "pretrained"))


def save_model_folder(model: Blip2Base, folder: str | os.PathLike, include_llm: bool | None = None) -> Path:
    """Write ``model`` as a folder :func:`load_model_folder` rebuilds it from.

    ``include_llm``: write the LLM into ``llm/``; None = only when it has no standalone source.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = to_dict(model.cfg)
    cfg.update(checkpoint=WEIGHTS_NAME, init_checkpoint=None)
    cfg["qformer"]["pretrained"] = None  # the checkpoint replaces BERT
    vision_cfg = VISION_ENCODERS.get(cfg["vision"]["name"]).parse_config(cfg["vision"])
    if encoder_builds_without_weights(vision_cfg):
        cfg["vision"]["pretrained"] = None  # the encoder's weights are in model.safetensors
    llm_attr = getattr(model, "LLM_ATTR", None)
    if llm_attr is not None and (include_llm if include_llm is not None else not _standalone_llm(model)):
        model.llm.save_pretrained(folder / LLM_DIR)
        model.bridge.tokenizer.save_pretrained(folder / LLM_DIR)
        cfg["llm"]["name_or_path"] = LLM_DIR
    if getattr(model, "QFORMER_TEXT", False):
        model.tokenizer.save_pretrained(folder / QFORMER_TOKENIZER_DIR)
        cfg["qformer"]["tokenizer"] = QFORMER_TOKENIZER_DIR
    # Embeddings grown for a checkpoint's added tokens (LAVIS's [PAD]) are not in the LLM's own source.
    keep = set(model.llm_embedding_names()) if getattr(model, "added_llm_rows", 0) else set()
    save_file(_without_llm(model.state_dict(), llm_attr, keep), str(folder / WEIGHTS_NAME))
    from omegaconf import OmegaConf

    atomic_write_text(folder / CONFIG_NAME, OmegaConf.to_yaml(OmegaConf.create({"model": cfg})))
    return folder


def load_model_folder(
    folder: str | os.PathLike, device: str | torch.device = "cpu", is_eval: bool = True, **overrides: Any
) -> Blip2Base:
    """Rebuild a model from :func:`save_model_folder`'s output; ``overrides`` merge into its config."""
    from omegaconf import OmegaConf

    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"'{folder}' has no {CONFIG_NAME}: not a folder written by save_model_folder / convert --to ours")
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("model"), Mapping) or "arch" not in raw["model"]:
        raise ConfigError(f"{path}: expected a top-level 'model:' section with an 'arch'")
    section = _resolve_paths(dict(raw["model"]), folder)
    merged = OmegaConf.to_container(OmegaConf.merge(section, dict(overrides)), resolve=True)
    model_cls = MODELS.get(section["arch"])
    model = model_cls.from_config(model_cls.parse_config(merged, "model")).to(device)
    return model.eval() if is_eval else model


def _without_llm(
    state: Mapping[str, torch.Tensor], llm_attr: str | None, keep: set[str] = frozenset()
) -> dict[str, torch.Tensor]:
    """Every tensor but the LLM's (except ``keep``), tied names written once (the Q-Former LM head's decoder)."""
    out, seen = {}, set()
    for key, value in state.items():
        identity = (value.data_ptr(), tuple(value.shape))
        if (llm_attr and key.startswith(f"{llm_attr}.") and key not in keep) or identity in seen:
            continue
        seen.add(identity)
        out[key] = value.detach().contiguous()
    return out


def _standalone_llm(model: Blip2Base) -> bool:
    """Whether ``llm.name_or_path`` loads the LLM by itself (not the inside of an HF BLIP-2 checkpoint)."""
    config = Path(model.cfg.llm.name_or_path) / "config.json"
    if not config.is_file():
        return True  # a hub id or a folder of its own: loadable as it is
    import json

    return json.loads(config.read_text()).get("model_type") not in HF_MODEL_TYPES


def _resolve_paths(section: dict[str, Any], folder: Path) -> dict[str, Any]:
    for keys in _PATH_KEYS:
        parent = section
        for key in keys[:-1]:
            parent = parent.get(key) or {}
        value = parent.get(keys[-1])
        if isinstance(value, str) and not Path(value).is_absolute() and (folder / value).exists():
            parent[keys[-1]] = str(folder / value)
    return section
