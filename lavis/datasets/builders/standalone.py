"""One data set's builder outside a run config: its defaults file, a storage root and overrides.

The command-line data tools (download, check) read a data set exactly as a run would, with the
same defaults and the same validation, without needing a model or a task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lavis.common.config import overlay
from lavis.common.errors import ConfigError
from lavis.common.paths import config_path
from lavis.datasets.builders.base_builder import BUILDERS, BaseDatasetBuilder


def dataset_section(name: str, storage: str | Path, overrides: Mapping[str, Any] | Sequence[str] = ()) -> DictConfig:
    """``configs/datasets/<name>.yaml`` <- ``storage`` <- overrides (a mapping or ``key=value`` strings)."""
    builder_cls = BUILDERS.get(name)
    base = OmegaConf.create({})
    if builder_cls.DEFAULT_CONFIG:
        loaded = OmegaConf.load(config_path(builder_cls.DEFAULT_CONFIG))
        base = loaded.get("datasets", {}).get(name) or base
    if isinstance(overrides, Mapping):
        extra = OmegaConf.create(dict(overrides))
    else:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"option {bad[0]!r} must look like key=value (a key of datasets.{name})")
        extra = OmegaConf.from_dotlist(list(overrides))
    return overlay(overlay(base, OmegaConf.create({"storage": str(storage)})), extra)


def make_builder(name: str, storage: str | Path, overrides: Mapping[str, Any] | Sequence[str] = ()) -> BaseDatasetBuilder:
    """The validated builder of data set ``name`` reading from ``storage``."""
    return BUILDERS.get(name).from_config(dataset_section(name, storage, overrides), name)
