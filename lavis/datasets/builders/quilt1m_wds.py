"""Image-caption webdataset shards (``make_shards``, img2dataset, ``webdataset.ShardWriter``) as a
stream for iteration-based training."""

from __future__ import annotations

import dataclasses

from lavis.common.errors import ConfigError
from lavis.datasets.builders.base_builder import BaseBuilderConfig, register_builder
from lavis.datasets.builders.table_builder import StorageBuilder
from lavis.datasets.datasets.quilt1m_stream import Quilt1MStream
from lavis.datasets.shards import expand_shards


@dataclasses.dataclass
class Quilt1MWdsConfig(BaseBuilderConfig):
    # Local glob(s) under storage, or what webdataset opens: URLs, pipe: commands, brace ranges,
    # '::'-joined lists (storage may then be null).
    shards: str = "shards/quilt1m-*.tar"
    # JSON field holding the caption; a sample without it (or with null here) uses <key>.txt.
    caption_field: str | None = "caption"
    shuffle: bool = True
    # Items held for the within-stream shuffle (memory: about this many encoded images per worker).
    shuffle_buffer: int = 1000
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        if self.shuffle_buffer < 0:
            raise ConfigError(f"'shuffle_buffer' must be >= 0, got {self.shuffle_buffer}")


@register_builder("quilt1m_wds")
class Quilt1MWdsBuilder(StorageBuilder):
    """``{"train": Quilt1MStream}``; the stream is infinite only if the runner loops over epochs."""

    Config = Quilt1MWdsConfig
    DEFAULT_CONFIG = "datasets/quilt1m_wds.yaml"

    def build(self) -> dict[str, Quilt1MStream]:
        stream = Quilt1MStream(
            self.shard_list(),
            caption_field=self.cfg.caption_field,
            vis_processor=self.processor("vis_processor", "train"),
            text_processor=self.processor("text_processor", "train"),
            shuffle=self.cfg.shuffle,
            shuffle_buffer=self.cfg.shuffle_buffer,
            seed=self.cfg.seed,
            strict=self.cfg.strict,
            max_pixels=self.cfg.max_image_pixels,
        )
        return {"train": stream}

    def shard_list(self) -> list[str]:
        """Shard paths / URLs (storage is read only for local entries)."""
        return expand_shards(self.cfg.shards, self.root, f"datasets.{self.name}.shards")
