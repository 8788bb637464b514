"""Base class and registry for dataset builders: config -> {split: Dataset}."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from torch.utils.data import Dataset

from lavis.common.registry import Registry
from lavis.common.schema import as_config
from lavis.datasets.image_io import DEFAULT_MAX_PIXELS


@dataclasses.dataclass
class BaseBuilderConfig:
    """Keys every dataset section has; a builder's own ``Config`` subclasses this."""

    # Root folder of the data set on disk (images, annotation files live below it).
    storage: str | None = None
    # Processor specs per split kind: {"train": {"name": ..., ...}, "eval": {...}}.
    vis_processor: dict[str, Any] = dataclasses.field(default_factory=dict)
    text_processor: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Relative weight of this data set's train split when several are mixed in one run.
    sample_ratio: float = 1.0
    # Unreadable images raise DataError instead of becoming skipped samples.
    strict: bool = False
    # Images with more pixels are refused as decompression bombs (PIL's own default limit).
    max_image_pixels: int = DEFAULT_MAX_PIXELS

    def validate(self) -> None:
        from lavis.common.errors import ConfigError

        if not self.sample_ratio > 0:
            raise ConfigError(f"'sample_ratio' must be > 0, got {self.sample_ratio}")
        if self.max_image_pixels <= 0:
            raise ConfigError(f"'max_image_pixels' must be > 0, got {self.max_image_pixels}")
        from lavis.processors.base_processor import processor_config

        for which in ("vis_processor", "text_processor"):  # each processor's own keys, checked now
            for kind, spec in (getattr(self, which) or {}).items():
                processor_config(spec, f"{which}.{kind}")


class BaseDatasetBuilder:
    """Builds the splits of one data set from its typed config.

    Subclasses set ``Config`` and ``DEFAULT_CONFIG`` (YAML under ``configs/``, top-level key
    ``datasets: {<name>: {...}}``) and implement ``build``.
    """

    Config: ClassVar[type] = BaseBuilderConfig
    DEFAULT_CONFIG: ClassVar[str | None] = None

    def __init__(self, cfg: Any, name: str = "") -> None:
        self.cfg = cfg
        self.name = name

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | Any, name: str) -> BaseDatasetBuilder:
        return cls(as_config(cls.Config, cfg, f"datasets.{name}"), name)

    def build(self) -> dict[str, Dataset]:
        raise NotImplementedError


BUILDERS: Registry[type[BaseDatasetBuilder]] = Registry("dataset builder", BaseDatasetBuilder)
register_builder = BUILDERS.register
