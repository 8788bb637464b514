"""Frozen-encoder feature cache: encode each image once, reuse it.

The image encoder is frozen, so with a deterministic image transform its output per image never
changes: training and evaluation can read ``image_embeds`` (the encoder output before
``ln_vision``, which the model applies and may train) from disk instead of decoding, resizing and
encoding the image every epoch. The features live in a :class:`FeatureStore`
(:mod:`lavis.datasets.feature_store`: layout, identity, index), keyed by the sha256 of each image's
bytes (:mod:`lavis.datasets.image_hashes`); this module decides which splits can use one
(``run.feature_cache``), fills it and serves a table's items from it.

Distributed build: each rank encodes its share of the missing images into its own segment and
lists it in a part file; rank 0 merges the parts into ``index.json`` (no data is copied) under a
file lock, so concurrent runs sharing the cache cannot lose each other's entries; everyone waits
on a barrier. ``cache_dir`` must be visible to every rank (a shared file system across nodes).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lavis.common.dist import (
    all_gather_object,
    barrier,
    broadcast_object,
    get_rank,
    get_world_size,
    is_main_process,
)
from lavis.common.errors import ConfigError, DataError
from lavis.common.output_lock import OutputFolderError
from lavis.common.paths import feature_cache_root
from lavis.common.tensor_digest import weights_digest
from lavis.datasets.bad_data import SkippedSample, skip_or_raise
from lavis.datasets.datasets.sample_table import TEXT_COLUMNS, SampleTable
from lavis.datasets.feature_store import FeatureStore, encoder_identity, transform_identity
from lavis.datasets.image_hashes import ImageHashIndex, image_keys

logger = logging.getLogger(__name__)

NOT_CACHED = "not in the feature cache (it could not be read when the cache was built)"


# ---- building --------------------------------------------------------------------------------------
class _Images(Dataset):
    """Rows of a table through ``processor``: (key, image tensor) or a skip."""

    def __init__(self, table: SampleTable, processor: Any, rows: Sequence[int], keys: Sequence[str]) -> None:
        self.view = copy.copy(table)
        self.view.vis_processor, self.view.text_processor = processor, None
        self.rows, self.keys = list(rows), list(keys)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[str, Any]:
        item = self.view[self.rows[i]]
        return self.keys[i], item if isinstance(item, SkippedSample) else item["image"]


def _stack(items: list[tuple[str, Any]]) -> tuple[list[str], torch.Tensor | None, list[str]]:
    good = [(k, x) for k, x in items if isinstance(x, torch.Tensor)]
    skipped = [str(x) for _, x in items if isinstance(x, SkippedSample)]
    images = torch.stack([x for _, x in good]) if good else None
    return [k for k, _ in good], images, skipped


@torch.no_grad()
def fill(
    store: FeatureStore, table: SampleTable, processor: Any, model: Any, *,
    batch_size: int = 64, num_workers: int = 2, device: torch.device | str = "cpu", progress: bool = True,
) -> np.ndarray:
    """Encode the images of ``table`` missing from ``store`` (every rank its share), merge, and
    return the (segment, row) of every table row (-1 where the image could not be read)."""
    paths = table.column("image_path")
    keys = image_keys(table, paths, ImageHashIndex(store.root), progress=progress)
    first_row: dict[str, int] = {}
    for row, key in enumerate(keys):
        first_row.setdefault(key, row)
    missing = sorted(k for k in first_row if k not in store.images)
    rank, world = get_rank(), get_world_size()
    if world > 1:  # rank 0's view decides: another run merging meanwhile must not split the work unevenly
        import torch.distributed as dist

        shared = [missing]
        dist.broadcast_object_list(shared, src=0)
        missing = shared[0]
    mine = missing[rank::world]
    tag = f"{uuid.uuid4().hex[:12]}-r{rank}"
    # Room for every missing image, checked before any is encoded; rank 0 decides for all.
    problem = broadcast_object(store.room_problem(len(missing)) if missing and is_main_process() else None)
    if problem:
        raise OutputFolderError(problem)
    if missing and is_main_process():
        logger.info("feature cache %s: encoding %d of %d images", store.dir, len(missing), len(first_row))
    loader = DataLoader(
        _Images(table, processor, [first_row[k] for k in mine], mine), batch_size=batch_size,
        num_workers=num_workers, collate_fn=_stack, pin_memory=torch.device(device).type == "cuda",
        generator=torch.Generator(),  # its own seed source: the run's global RNG stream stays untouched
    )

    def batches() -> Iterator[tuple[list[str], torch.Tensor]]:
        from tqdm import tqdm

        for batch_keys, images, skipped in tqdm(loader, desc="feature cache", disable=not (progress and is_main_process())):
            for reason in skipped:
                logger.warning("feature cache: left out %s", reason)
            if images is not None:
                yield batch_keys, model.encode_image_frozen(images.to(device, non_blocking=True))

    try:
        part, error = store.write_segment(batches(), tag), None
    except (OutputFolderError, DataError) as err:  # a full disk, an fp16 overflow: every rank hears of it
        part, error = None, err
    parts = _gather_parts(part, error)
    if is_main_process() and parts:
        store.merge(parts)
    barrier()
    store.reload()
    return store.locate(keys)


def _gather_parts(part: Path | None, error: Exception | None) -> list[Path]:
    """Every rank's segment; the first rank's error raised on every rank (no rank waits alone)."""
    barrier()
    gathered = all_gather_object((str(part) if part else None, error))
    errors = [err for _, err in gathered if err is not None]
    if errors:
        raise errors[0]
    return [Path(p) for p, _ in gathered if p]


# ---- reading in the data pipeline -------------------------------------------------------------------
class CachedFeatures(Dataset):
    """A table's items with ``image_embeds`` (from the store) in place of ``image``; no image is
    opened. Rows whose image was unreadable at build time stay skipped samples."""

    def __init__(self, table: SampleTable, store: FeatureStore, locations: np.ndarray) -> None:
        if len(locations) != len(table):
            raise ValueError(f"{len(locations)} cache locations for a table of {len(table)} rows")
        self.table, self.store, self.locations = table, store, locations

    def __len__(self) -> int:
        return len(self.table)

    def text_lengths(self, columns: Sequence[str] = TEXT_COLUMNS) -> np.ndarray:
        """The table's text lengths (length-grouped batching needs no image either way)."""
        return self.table.text_lengths(columns)

    def column(self, name: str) -> list[Any]:
        return self.table.column(name)

    def __getitem__(self, index: int) -> dict[str, Any] | SkippedSample:
        item = self.table.row(index)
        segment, row = (int(v) for v in self.locations[index])
        if segment < 0:
            root = self.table.image_root
            path = str(root / item["image_path"]) if root else item["image_path"]
            return dataclasses.replace(skip_or_raise(path, NOT_CACHED, self.table.strict), fields=item)
        item["image_embeds"] = self.store.read(segment, row)
        if self.table.text_processor is not None:
            item["text_input"] = self.table.text_processor(item["text_input"])
        return item


# ---- the runner's policy ------------------------------------------------------------------------------
def model_problem(model: Any) -> str | None:
    """Why ``model``'s image features cannot be cached, or None."""
    if not callable(getattr(model, "encode_image_frozen", None)) or not hasattr(model, "visual_encoder"):
        return f"{type(model).__name__} has no frozen image encoder (encode_image_frozen)"
    if any(p.requires_grad for p in model.visual_encoder.parameters()):
        return "the image encoder trains (model.vision.freeze: false), so its features change every step"
    return None


def is_deterministic(processor: Any) -> bool:
    """Whether a processor maps an image to one fixed tensor (no random augmentation).

    Processors declare it with the class attribute ``deterministic`` (False by default, since an
    unknown processor may hide randomness).
    """
    return bool(getattr(processor, "deterministic", False))


def split_processor(dataset: Dataset, train: bool, mode: str, eval_spec: Any, where: str) -> tuple[Any, str]:
    """(processor to cache with, or None; why not). ``on`` trains on eval-transform features."""
    if not isinstance(dataset, SampleTable):
        return None, f"{type(dataset).__name__} is not a table of images (streams are encoded on the fly)"
    processor = dataset.vis_processor
    if processor is None:
        return None, "it has no image processor"
    if is_deterministic(processor):
        return processor, ""
    if train and mode == "on" and eval_spec:
        from lavis.processors.base_processor import build_processor

        fixed = build_processor(eval_spec, f"{where}.vis_processor.eval")
        if is_deterministic(fixed):
            logger.warning("run.feature_cache=on: %s trains on eval-transform features (no augmentation)", where)
            return fixed, ""
    return None, f"its image processor {type(processor).__name__} augments at random"


def _same_encoder_on_every_rank(model: Any) -> str:
    """Give every rank rank 0's frozen encoder (as DDP would) when they differ, e.g. randomly
    initialised with per-rank seeds; otherwise each rank would key its own cache. Returns the
    encoder's :func:`weights_digest`."""
    weights = weights_digest([model.visual_encoder])
    if get_world_size() == 1:
        return weights
    import torch.distributed as dist

    if len(set(all_gather_object(weights))) > 1:
        for tensor in model.visual_encoder.state_dict().values():  # shares storage with the parameters
            dist.broadcast(tensor, src=0)
        weights = weights_digest([model.visual_encoder])
    return weights


def apply_feature_cache(
    datasets: dict[str, dict[str, Dataset]], model: Any, cfg: Any, output_dir: str | os.PathLike,
    device: torch.device | str = "cpu",
) -> dict[str, dict[str, Dataset]]:
    """Per ``run.feature_cache`` (auto | on | off): build what is missing and swap the splits the
    run uses for :class:`CachedFeatures`. ``auto`` caches every split whose transform is fixed
    (evaluation always; training when augmentation is off); ``on`` also trains a random-transform
    split on eval-transform features and fails, naming the split, where no cache is possible."""
    run = cfg.run
    mode = getattr(run, "feature_cache", "off")
    if mode == "off":
        return datasets
    problem = model_problem(model)
    if problem:
        if mode == "on":
            raise ConfigError(f"run.feature_cache=on, but {problem}")
        logger.info("feature cache not used: %s", problem)
        return datasets
    weights = _same_encoder_on_every_rank(model)
    train = set() if run.evaluate else set(run.train_splits)
    wanted = train | set(run.valid_splits) | set(run.test_splits)
    root = feature_cache_root(run, output_dir)
    identity = encoder_identity(model, weights)
    out = {name: dict(splits) for name, splits in datasets.items()}
    for name, splits in datasets.items():
        for split in sorted(wanted & set(splits)):
            spec = (getattr(cfg.datasets.get(name), "vis_processor", None) or {}).get("eval")
            processor, why = split_processor(splits[split], split in train, mode, spec, f"datasets.{name}")
            if processor is None:
                if mode == "on":
                    raise ConfigError(f"run.feature_cache=on, but datasets.{name} split '{split}' cannot be cached: {why}")
                logger.info("feature cache: %s/%s is encoded on the fly (%s)", name, split, why)
                continue
            store = FeatureStore(root, {**identity, "transform": transform_identity(processor)}, run.feature_cache_dtype)
            locations = fill(
                store, splits[split], processor, model, batch_size=run.batch_size_eval,
                num_workers=run.num_workers, device=device, progress=run.progress_bar,
            )
            out[name][split] = CachedFeatures(splits[split], store, locations)
    return out
