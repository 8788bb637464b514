"""Base class and registry for image and text processors (named in dataset configs)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from lavis.common.registry import Registry
from lavis.common.schema import as_config


@dataclasses.dataclass
class ProcessorConfig:
    name: str


class BaseProcessor:
    """A callable that turns one raw item (PIL image, string) into model input."""

    Config: ClassVar[type] = ProcessorConfig
    # True when an input always maps to the same output (no random augmentation): the frozen
    # encoder's features of such images can be cached (lavis/datasets/feature_cache.py).
    deterministic: ClassVar[bool] = False

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | Any, where: str = "processor") -> BaseProcessor:
        return cls(as_config(cls.Config, cfg, where))

    def __call__(self, item: Any) -> Any:
        raise NotImplementedError


PROCESSORS: Registry[type[BaseProcessor]] = Registry("processor", BaseProcessor)
register_processor = PROCESSORS.register


def build_processor(cfg: Mapping[str, Any] | None, where: str) -> BaseProcessor | None:
    """``{name: ..., **options}`` -> processor instance; None stays None."""
    if cfg is None:
        return None
    from lavis.common.schema import plain

    cfg = plain(cfg)
    _check_name(cfg, where)
    return PROCESSORS.get(cfg["name"]).from_config(cfg, where)


def processor_config(cfg: Mapping[str, Any] | None, where: str) -> Any:
    """The typed config of a processor spec, validated without building the processor."""
    if cfg is None:
        return None
    from lavis.common.schema import plain

    cfg = plain(cfg)
    _check_name(cfg, where)
    return as_config(PROCESSORS.get(cfg["name"]).Config, cfg, where)


def _check_name(cfg: Any, where: str) -> None:
    from lavis.common.errors import ConfigError

    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config key '{where}': expected a mapping with a 'name', got {cfg!r}")
    if "name" not in cfg:
        raise ConfigError(f"missing required config key '{where}.name' (the processor's registered name)")
