"""The on-disk store of frozen-encoder features: identities, image keys, segments and the index.

A store holds the output of one frozen image encoder (vision encoder + ``ln_vision``) under one
image transform, for every image it has seen; :mod:`lavis.datasets.feature_cache` fills it and
reads it in the data pipeline.

Layout: ``<cache_dir>/<store id>/`` where the store id is a sha256 of (encoder config + a digest of
its weights, transform config, storage dtype), so a different encoder or transform never sees
another's features. Inside, ``seg-*.bin`` are raw ``(rows, tokens, width)`` fp16/bf16 arrays
(bf16 stored as 16-bit integers) read with ``np.memmap``, and ``index.json`` maps each image key
-- sha256 of (image path, file size, mtime; or the path alone for images stored in a table, whose
path carries a content hash) -- to ``[segment, row]``. Files are written under temporary names
and renamed; ``index.json`` is replaced last, so readers see the old or the new cache, never half.
Each writer adds its own segment and part file; :meth:`FeatureStore.merge` adds the parts to
``index.json`` under a file lock, so concurrent writers sharing the cache cannot lose each other's
entries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lavis.common.checkpoint import atomic_write_text
from lavis.common.errors import DataError
from lavis.common.schema import _plain
from lavis.datasets.datasets.sample_table import SampleTable

VERSION = 1
INDEX = "index.json"
STORAGE = {"fp16": (np.float16, torch.float16), "bf16": (np.int16, torch.bfloat16)}  # bf16 bits in int16


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


# ---- image keys -------------------------------------------------------------------------------
def image_keys(dataset: SampleTable, paths: Sequence[str], threads: int = 16) -> list[str]:
    """sha256 of (path, size, mtime_ns) for files; of the path alone for table-held image bytes.

    ``paths`` is ``dataset``'s ``image_path`` column, row by row. Each distinct file is stat'ed
    once (rows share images); rows whose image is held in the table are not stat'ed at all.
    """
    root = dataset.image_root
    held = dataset.images_in_table()
    if held is not None and len(held) != len(paths):
        raise ValueError(f"{len(paths)} image paths for a table of {len(held)} rows")

    def rows() -> Iterator[tuple[str, bool]]:
        return zip(paths, itertools.repeat(False) if held is None else held)

    def key(item: tuple[str, bool]) -> str:
        path, in_table = item
        ident = path
        if not in_table:
            try:
                stat = os.stat(root / path if root is not None else path)
                ident = f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}"
            except OSError:  # a missing file: keyed on its path, skipped when encoded
                pass
        return hashlib.sha256(ident.encode()).hexdigest()

    distinct = list(dict.fromkeys(rows()))
    with ThreadPoolExecutor(max_workers=threads) as pool:  # stat calls wait on (network) disks
        keyed = dict(zip(distinct, pool.map(key, distinct, chunksize=256)))
    return [keyed[item] for item in rows()]


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
