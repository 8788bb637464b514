"""Named encoder configs under ``configs/models/vision/<name>.yaml`` (top-level key ``vision:``).

A preset is a ready ``model.vision`` section: ``eva_clip_g``, ``clip_L``, ``quiltnet_b32``,
``quiltnet_b16``, ``plip`` at full size, ``*_tiny`` for tests and CPU runs. Overrides are merged
on top, so ``vision_preset("eva_clip_g", image_size=364)`` is the 364-px variant.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from lavis.common.errors import ConfigError
from lavis.common.paths import config_path, config_root


def vision_preset(name: str, **overrides: Any) -> dict[str, Any]:
    """The ``vision`` mapping of preset ``name`` with ``overrides`` applied."""
    try:
        path = config_path(f"models/vision/{name}.yaml")
    except FileNotFoundError:
        known = sorted(p.stem for p in (config_root() / "models" / "vision").glob("*.yaml"))
        raise ConfigError(f"unknown vision preset '{name}'. Known: {', '.join(known) or '(none)'}") from None
    loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(loaded, dict) or not isinstance(loaded.get("vision"), dict):
        raise ConfigError(f"vision preset '{path}' must hold a 'vision:' mapping at top level")
    return {**loaded["vision"], **overrides}
