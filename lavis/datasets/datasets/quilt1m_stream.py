"""Quilt-1M (or any image-caption set) streamed from webdataset tar shards, for iteration-based
training at scale.

A sample needs an image (any of ``shards.IMAGE_EXTENSIONS``) and a caption: the JSON row's
``caption_field`` when the row has that text, else ``<key>.txt``. Its ``image_id`` (equal ids are
ITC positives) is the row's integer ``image_id`` when it has one (``make_shards``), else a 63-bit
hash of the image bytes, so one image's captions are positives in shards from any writer.

Exactly once per pass: the R ranks x W DataLoader workers form R*W slots (slot = rank*W +
worker). With at least R*W shards, slot s reads shards ``order[s::R*W]``; with fewer, every slot
reads all shards and keeps the samples whose running index is s modulo R*W. The shard order is a
permutation seeded by (seed, epoch) - the same in every slot - and each slot shuffles its own
stream through a buffer seeded by (seed, epoch, slot). So a slot's stream depends only on
(seed, epoch, R, W), and ``set_skip`` can resume it exactly: worker w drops the first
``per_worker[w]`` items of the epoch's stream before decoding anything.

Use ``persistent_workers=False`` (the default) so ``set_epoch``/``set_skip`` made in the main
process reach the workers at the start of each epoch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from lavis.common import dist
from lavis.datasets.bad_data import SkippedSample, skip_or_raise
from lavis.datasets.image_io import DEFAULT_MAX_PIXELS, decode_size, load_image_bytes
from lavis.datasets.shards import ShardReadError, image_member, iter_shard

Raw = dict[str, Any]


def buffer_shuffle(stream: Iterator[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """Approximate shuffle with a fixed-size buffer; deterministic given ``rng``."""
    buffer: list[Any] = []
    for item in stream:
        if len(buffer) < size:
            buffer.append(item)
            continue
        pick = int(rng.integers(size))
        buffer[pick], item = item, buffer[pick]
        yield item
    for pick in rng.permutation(len(buffer)):
        yield buffer[pick]


class Quilt1MStream(IterableDataset):
    """Yields ``{image, image_id, image_path, text_input}`` or ``SkippedSample`` per shard sample."""

    def __init__(
        self,
        shards: Sequence[str],
        caption_field: str | None = "caption",
        vis_processor: Any = None,
        text_processor: Any = None,
        shuffle: bool = True,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        strict: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if not shards:
            raise ValueError("Quilt1MStream needs at least one shard")
        self.shards = sorted(str(s) for s in shards)
        self.caption_field = caption_field
        self.vis_processor = vis_processor
        self.text_processor = text_processor
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.strict = strict
        self.max_pixels = max_pixels
        self.epoch = 0
        self._skip: list[int] | None = None
        self._ranks: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order; clears any skip (call ``set_skip`` after this to resume)."""
        self.epoch = epoch
        self._skip = None
        # Read here, in the main process: a worker started with spawn has no process group.
        self._ranks = (dist.get_rank(), dist.get_world_size())

    def set_skip(self, per_worker: Sequence[int]) -> None:
        """On the next iteration worker ``w`` drops the first ``per_worker[w]`` items of its stream."""
        if any(int(n) < 0 for n in per_worker):
            raise ValueError(f"set_skip: counts must be >= 0, got {list(per_worker)}")
        self._skip = [int(n) for n in per_worker]

    def _slot(self) -> tuple[int, int, int, int]:
        rank, world = self._ranks if self._ranks is not None else (dist.get_rank(), dist.get_world_size())
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world * workers, worker, workers

    def _shard_samples(self, shard: str) -> Iterator[Raw | SkippedSample]:
        try:
            yield from iter_shard(shard)
        except ShardReadError as err:
            yield skip_or_raise(err.path, f"{err.reason} after {err.samples_read} samples", self.strict)

    def _slot_stream(self, slot: int, slots: int) -> Iterator[Raw | SkippedSample]:
        order = list(self.shards)
        if self.shuffle:
            order = [order[i] for i in np.random.default_rng([self.seed, self.epoch]).permutation(len(order))]
        if len(order) >= slots:
            for shard in order[slot::slots]:
                yield from self._shard_samples(shard)
            return
        index = 0
        for shard in order:
            for sample in self._shard_samples(shard):
                if index % slots == slot:
                    yield sample
                index += 1

    def __iter__(self) -> Iterator[dict[str, Any] | SkippedSample]:
        slot, slots, worker, workers = self._slot()
        skip = 0
        if self._skip is not None:
            if len(self._skip) != workers:
                raise ValueError(
                    f"set_skip got {len(self._skip)} count(s) but the DataLoader has {workers} worker(s)"
                )
            skip = self._skip[worker]
        stream = self._slot_stream(slot, slots)
        if self.shuffle and self.shuffle_buffer > 1:
            stream = buffer_shuffle(stream, self.shuffle_buffer, np.random.default_rng([self.seed, self.epoch, slot, slots]))
        for position, raw in enumerate(stream):
            if position >= skip:
                yield raw if isinstance(raw, SkippedSample) else self.decode(raw)

    def decode(self, raw: Raw) -> dict[str, Any] | SkippedSample:
        """One shard sample -> contract item (or a skip naming the sample and the reason)."""
        key = str(raw.get("__key__"))
        row: dict[str, Any] = {}
        if "json" in raw:
            try:
                row = json.loads(raw["json"])
            except ValueError as err:
                return skip_or_raise(key, f"malformed JSON in the shard ({err})", self.strict)
            if not isinstance(row, dict):
                return skip_or_raise(key, f"the shard's JSON is a {type(row).__name__}, expected an object", self.strict)
        name = str(row.get("image_path") or row.get("url") or (f"{raw['__url__']}/{key}" if "__url__" in raw else key))
        caption = self._caption(raw, row)
        if caption is None:
            where = f"a '{self.caption_field}' text in {key}.json nor " if self.caption_field else ""
            return skip_or_raise(name, f"no caption: neither {where}a non-empty {key}.txt", self.strict)
        ext = image_member(raw)
        data = raw[ext] if ext is not None else None
        image = load_image_bytes(data, name, self.strict, self.max_pixels, decode_size(self.vis_processor))
        if isinstance(image, SkippedSample):
            return image
        image_id = row.get("image_id")
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            image_id = int.from_bytes(hashlib.sha256(data).digest()[:8], "big") >> 1  # fits int64
        return {
            "image": self.vis_processor(image) if self.vis_processor is not None else image,
            "image_id": image_id,
            "image_path": name,
            "text_input": self.text_processor(caption) if self.text_processor is not None else caption,
        }

    def _caption(self, raw: Raw, row: dict[str, Any]) -> str | None:
        """The JSON row's ``caption_field`` text, else the ``.txt`` member's."""
        candidates = [row.get(self.caption_field)] if self.caption_field else []
        if isinstance(raw.get("txt"), bytes):
            candidates.append(raw["txt"].decode("utf-8", errors="replace"))
        return next((c for c in candidates if isinstance(c, str) and c.strip()), None)
