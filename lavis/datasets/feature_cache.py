"""Frozen-encoder feature cache: encode each image once (vision encoder + ``ln_vision``), reuse it.

The image encoder is frozen, so with a deterministic image transform its output per image never
changes: stage 2 and evaluation can read ``image_embeds`` from disk instead of decoding, resizing
and encoding the image every epoch.

Layout: ``<cache_dir>/<store id>/`` where the store id is a sha256 of (encoder config + a digest of
its weights, transform config, storage dtype), so a different encoder or transform never sees
another's features. Inside, ``seg-*.bin`` are raw ``(rows, tokens, width)`` fp16/bf16 arrays
(bf16 stored as 16-bit integers) read with ``np.memmap``, and ``index.json`` maps each image key
-- sha256 of (image path, file size, mtime; or the path alone for images stored in a table, whose
path carries a content hash) -- to ``[segment, row]``. Files are written under temporary names
and renamed; ``index.json`` is replaced last, so readers see the old or the new cache, never half.

Distributed build: each rank encodes its share of the missing images into its own segment and
lists it in a part file; rank 0 merges the parts into ``index.json`` (no data is copied) under a
file lock, so concurrent runs sharing the cache cannot lose each other's entries; everyone waits
on a barrier. ``cache_dir`` must be visible to every rank (a shared file system across nodes).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lavis.common.checkpoint import atomic_write_text
from lavis.common.dist import all_gather_object, barrier, get_rank, get_world_size, is_main_process
from lavis.common.errors import ConfigError, DataError
from lavis.common.schema import _plain
from lavis.datasets.bad_data import SkippedSample, skip_or_raise
from lavis.datasets.datasets.sample_table import SampleTable

logger = logging.getLogger(__name__)

VERSION = 1
INDEX = "index.json"
STORAGE = {"fp16": (np.float16, torch.float16), "bf16": (np.int16, torch.bfloat16)}  # bf16 bits in int16
NOT_CACHED = "not in the feature cache (it could not be read when the cache was built)"


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


# ---- identities ------------------------------------------------------------------------------
@torch.no_grad()
def weights_digest(modules: Sequence[torch.nn.Module], samples_per_tensor: int = 1024) -> str:
    """sha256 over every tensor's name, shape, dtype and an evenly strided sample of its values.

    Cheap even for ViT-g (a few MB read), yet any re-initialisation or fine-tuning changes it.
    """
    sha = hashlib.sha256()
    for index, module in enumerate(modules):
        for name, tensor in sorted(module.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // samples_per_tensor)
            sample = flat[::step].float().cpu().numpy()
            sha.update(f"{index}.{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            sha.update(sample.tobytes())
    return sha.hexdigest()


def encoder_identity(model: Any) -> dict[str, Any]:
    """What the cached features depend on in the model: encoder config, weights, output shape."""
    encoder = model.visual_encoder
    return {
        "vision": _plain(model.cfg.vision),
        "weights": weights_digest([encoder, model.ln_vision]),
        "tokens": int(encoder.num_tokens),
        "width": int(encoder.num_features),
    }


def transform_identity(processor: Any) -> dict[str, Any]:
    cfg = processor.cfg
    config = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else repr(cfg)
    return {"class": f"{type(processor).__module__}.{type(processor).__qualname__}", "config": config}


def is_deterministic(processor: Any) -> bool:
    """Whether a processor maps an image to one fixed tensor (no random augmentation).

    Processors declare it with the class attribute ``deterministic`` (False by default, since an
    unknown processor may hide randomness).
    """
    return bool(getattr(processor, "deterministic", False))


def image_keys(dataset: SampleTable, paths: Sequence[str], threads: int = 16) -> list[str]:
    """sha256 of (path, size, mtime_ns) for files; of the path alone for table-held image bytes."""
    root = dataset.image_root

    def key(path: str) -> str:
        try:
            stat = os.stat(root / path if root is not None else path)
            ident = f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}"
        except OSError:  # bytes in the table ("name#<content hash>"), or a missing file
            ident = path
        return hashlib.sha256(ident.encode()).hexdigest()

    with ThreadPoolExecutor(max_workers=threads) as pool:  # stat calls wait on (network) disks
        return list(pool.map(key, paths, chunksize=256))


# ---- the on-disk store -------------------------------------------------------------------------
class FeatureStore:
    """One (encoder, transform, dtype) store: segments of features plus the image-key index."""

    def __init__(self, root: str | os.PathLike, identity: dict[str, Any], dtype: str = "fp16") -> None:
        if dtype not in STORAGE:
            raise DataError(f"feature cache dtype must be one of {sorted(STORAGE)}, got {dtype!r}")
        # Round-tripped through JSON so that it compares equal to what index.json holds.
        self.identity = json.loads(json.dumps({**identity, "dtype": dtype, "version": VERSION}, default=str))
        self.dir = Path(root) / digest(self.identity)[:24]
        self.dtype = dtype
        self.tokens, self.width = int(identity["tokens"]), int(identity["width"])
        self.segments: list[dict[str, Any]] = []
        self.images: dict[str, list[int]] = {}
        self._maps: dict[int, np.memmap] = {}
        self._pid = os.getpid()
        self.reload()

    # -- index --
    def reload(self) -> None:
        path = self.dir / INDEX
        if not path.exists():
            self.segments, self.images = [], {}
            return
        try:
            index = json.loads(path.read_text())
        except ValueError as err:
            raise DataError(f"{path}: corrupt feature-cache index ({err}); delete {self.dir} to rebuild") from None
        if index.get("identity") != self.identity:
            raise DataError(f"{path}: index identity does not match its folder name; delete {self.dir}")
        self.segments, self.images = index["segments"], index["images"]
        self._maps = {}

    def locate(self, keys: Sequence[str]) -> np.ndarray:
        """(len(keys), 2) int64 of (segment, row); -1 where the key is not cached."""
        out = np.full((len(keys), 2), -1, dtype=np.int64)
        for i, key in enumerate(keys):
            found = self.images.get(key)
            if found is not None:
                out[i] = found
        return out

    # -- reading --
    def _segment(self, index: int) -> np.memmap:
        if os.getpid() != self._pid:  # a forked DataLoader worker opens its own maps
            self._maps, self._pid = {}, os.getpid()
        if index not in self._maps:
            segment = self.segments[index]
            self._maps[index] = np.memmap(
                self.dir / segment["file"], dtype=STORAGE[self.dtype][0], mode="r",
                shape=(segment["rows"], self.tokens, self.width),
            )
        return self._maps[index]

    def read(self, segment: int, row: int) -> torch.Tensor:
        """(tokens, width) features in the storage dtype (fp16 or bf16)."""
        array = torch.from_numpy(np.array(self._segment(segment)[row]))
        return array.view(STORAGE[self.dtype][1])

    def __getstate__(self) -> dict[str, Any]:
        # Copies sent to DataLoader workers only read: memmaps are reopened there (never pickled
        # as arrays) and the key index stays behind.
        return {**self.__dict__, "_maps": {}, "images": {}}

    # -- writing --
    def write_segment(self, features: Iterator[tuple[list[str], torch.Tensor]], count: int, tag: str) -> Path | None:
        """Write up to ``count`` rows from ``(keys, (B, tokens, width) tensor)`` batches as a new
        segment; returns its part file (for :meth:`merge`), or None when nothing was written."""
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"seg-{tag}.bin"
        tmp = self.dir / f".{name}.tmp"
        rows: list[str] = []
        if count:
            array = np.memmap(tmp, dtype=STORAGE[self.dtype][0], mode="w+", shape=(count, self.tokens, self.width))
            for keys, embeds in features:
                half = embeds.to(STORAGE[self.dtype][1])
                half = half.view(torch.int16) if self.dtype == "bf16" else half
                array[len(rows) : len(rows) + len(keys)] = half.cpu().numpy()
                rows.extend(keys)
            array.flush()
            del array
        if not rows:
            tmp.unlink(missing_ok=True)
            return None
        if len(rows) < count:  # unreadable images were left out: trim the file to what was written
            os.truncate(tmp, len(rows) * self.tokens * self.width * 2)
        os.replace(tmp, self.dir / name)
        part = self.dir / f".part-{tag}.json"
        atomic_write_text(part, json.dumps({"file": name, "keys": rows}))
        return part

    def merge(self, parts: Sequence[Path]) -> None:
        """Add written segments to ``index.json`` (read-modify-write under a file lock)."""
        with _locked(self.dir / ".lock"):
            self.reload()
            for part in parts:
                entry = json.loads(part.read_text())
                segment = len(self.segments)
                self.segments.append({"file": entry["file"], "rows": len(entry["keys"])})
                for row, key in enumerate(entry["keys"]):
                    self.images.setdefault(key, [segment, row])  # the first writer of a key wins
            index = {"identity": self.identity, "segments": self.segments, "images": self.images}
            atomic_write_text(self.dir / INDEX, json.dumps(index))
            for part in parts:
                part.unlink(missing_ok=True)
        self._maps = {}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    keys = image_keys(table, paths)
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

    part = store.write_segment(batches(), len(mine), tag)
    parts = _gather_parts(part)
    if is_main_process() and parts:
        store.merge(parts)
    barrier()
    store.reload()
    return store.locate(keys)


def _gather_parts(part: Path | None) -> list[Path]:
    barrier()
    return [Path(p) for p in all_gather_object(str(part) if part else None) if p]


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

    def set_epoch(self, epoch: int) -> None:
        if callable(getattr(self.table, "set_epoch", None)):
            self.table.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any] | SkippedSample:
        item = self.table.row(index)
        segment, row = (int(v) for v in self.locations[index])
        if segment < 0:
            root = self.table.image_root
            path = str(root / item["image_path"]) if root else item["image_path"]
            return skip_or_raise(path, NOT_CACHED, self.table.strict)
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


def _same_encoder_on_every_rank(model: Any) -> None:
    """Give every rank rank 0's frozen encoder (as DDP would) when they differ, e.g. randomly
    initialised with per-rank seeds; otherwise each rank would key its own cache."""
    if get_world_size() == 1:
        return
    import torch.distributed as dist

    modules = [model.visual_encoder, model.ln_vision]
    if len(set(all_gather_object(weights_digest(modules)))) > 1:
        for module in modules:
            for tensor in module.state_dict().values():  # share storage with the parameters
                dist.broadcast(tensor, src=0)


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
    _same_encoder_on_every_rank(model)
    train = set() if run.evaluate else set(run.train_splits)
    wanted = train | set(run.valid_splits) | set(run.test_splits)
    root = Path(run.feature_cache_dir or Path(output_dir) / "feature_cache")
    identity = encoder_identity(model)
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
