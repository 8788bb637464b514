"""Any open_clip ViT image tower (QuiltNet, OpenAI/LAION CLIP, ...) as a patch-token encoder.

``model_name`` gives the architecture: a built-in open_clip name (``ViT-B-32``, or one added with
``open_clip.add_model_config``), ``hf-hub:org/repo`` (its ``open_clip_config.json``), or a local
folder (or ``local-dir:`` path) holding ``open_clip_config.json``. ``pretrained`` gives the
weights: a file, a folder, a Hub id (``hf-hub:wisdomik/QuiltNet-B-32``), a URL, or an open_clip
pretrained tag of that model (``openai``, ``laion2b_s34b_b79k``). ``layer`` picks the block whose
output is returned: -2 (default) is the last-but-one block, BLIP-2's choice; -1 the last. Tokens
are taken before ``ln_post``, as BLIP-2 applies its own ``ln_vision``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from pathlib import Path
from typing import Any

from lavis.common.errors import ConfigError
from lavis.models.vision.base import register_vision_encoder
from lavis.models.vision.common import TokenEncoderConfig, blocks_up_to
from lavis.models.vision.open_clip_tokens import OpenClipTokenEncoder
from lavis.models.vision.weights import fetch_file, hub_repo_id, load_weights

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
OPEN_CLIP_HINT = (
    "open_clip weights live in Hub repos such as wisdomik/QuiltNet-B-32 (QuiltNet-B-32) or "
    "wisdomik/QuiltNet-B-16: download one and set 'pretrained' to the folder or file."
)


@dataclasses.dataclass
class OpenClipConfig(TokenEncoderConfig):
    supports_drop_path = False

    # Built-in open_clip name, 'hf-hub:org/repo', or a folder with open_clip_config.json.
    model_name: str = ""
    # Block whose output is returned (Python index): -2 = last-but-one (BLIP-2), -1 = last.
    layer: int = -2
    # None: the pretrained tag's or the model config's setting.
    quick_gelu: bool | None = None

    def validate(self) -> None:
        super().validate()
        if not self.model_name:
            raise ConfigError(
                "'model_name' is required: an open_clip model name (ViT-B-32), 'hf-hub:org/repo' or a folder"
            )


def open_clip_model_config(model_name: str) -> dict[str, Any]:
    """The model config (``embed_dim``, ``vision_cfg``, ...) that ``model_name`` names."""
    folder = Path(model_name.removeprefix("local-dir:")).expanduser()
    if model_name.startswith("hf-hub:"):
        path = fetch_file(model_name, [OPEN_CLIP_CONFIG], f"open_clip config of '{model_name}'", OPEN_CLIP_HINT)
    elif folder.is_dir():
        path = folder / OPEN_CLIP_CONFIG
        if not path.is_file():
            raise ConfigError(f"model_name '{model_name}' is a folder without {OPEN_CLIP_CONFIG}")
    else:
        import open_clip

        config = open_clip.get_model_config(model_name)
        if config is None:
            close = difflib.get_close_matches(model_name, open_clip.list_models(), n=3)
            raise ConfigError(
                f"unknown open_clip model '{model_name}' (closest: {close or 'none'}); use a built-in "
                "name, 'hf-hub:org/repo', or a folder holding open_clip_config.json"
            )
        return config
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read open_clip config '{path}': {err}") from err
    config = config.get("model_cfg", config)
    if "vision_cfg" not in config or "embed_dim" not in config:
        raise ConfigError(f"'{path}' is not an open_clip model config (needs 'embed_dim' and 'vision_cfg')")
    return config


def open_clip_weights_source(model_name: str, pretrained: str) -> tuple[str, bool | None]:
    """A path, URL or Hub id for ``pretrained``; an open_clip tag becomes its Hub repo (or URL).

    Also returns the tag's ``quick_gelu`` (OpenAI-trained weights need QuickGELU), None otherwise.
    """
    is_location = Path(pretrained).expanduser().exists() or pretrained.startswith(("http://", "https://"))
    if is_location or hub_repo_id(pretrained) is not None:
        return pretrained, None
    from open_clip.pretrained import get_pretrained_cfg

    tag = get_pretrained_cfg(model_name, pretrained) or {}
    source = tag.get("hf_hub", "").strip("/") or tag.get("url", "")
    return (source or pretrained), tag.get("quick_gelu")


@register_vision_encoder("open_clip")
class OpenClipVisionEncoder(OpenClipTokenEncoder):
    """Images (B, 3, S, S) -> CLS + patch tokens of the chosen block of an open_clip ViT."""

    Config = OpenClipConfig

    def __init__(self, cfg: OpenClipConfig) -> None:
        super().__init__(cfg)
        from open_clip.model import _build_vision_tower  # builds the image tower alone

        self.model_name = cfg.model_name
        model_cfg = open_clip_model_config(cfg.model_name)
        vision_cfg = dict(model_cfg["vision_cfg"])
        if vision_cfg.get("timm_model_name") or not isinstance(vision_cfg.get("layers"), int):
            raise ConfigError(
                f"open_clip model '{cfg.model_name}' has a timm or ResNet image tower; only open_clip "
                "ViT towers are supported here"
            )
        vision_cfg["image_size"] = cfg.image_size
        tag_quick_gelu = open_clip_weights_source(cfg.model_name, cfg.pretrained)[1] if cfg.pretrained else None
        quick_gelu = next(
            (v for v in (cfg.quick_gelu, tag_quick_gelu, model_cfg.get("quick_gelu")) if v is not None), False
        )
        tower = _build_vision_tower(model_cfg["embed_dim"], vision_cfg, quick_gelu=quick_gelu)
        self.adopt_tower(tower, blocks_up_to(cfg.layer, vision_cfg["layers"], "model.vision.layer"))

    def load_pretrained(self, source: str) -> None:
        location = open_clip_weights_source(self.model_name, source)[0]
        state, path = load_weights(location, OPEN_CLIP_WEIGHT_FILES, f"open_clip '{self.model_name}'", OPEN_CLIP_HINT)
        self.load_tower_state_dict(state, source=path)
