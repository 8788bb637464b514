"""The on-disk store of frozen-encoder features: identities, segments and the index.

A store holds the output of one frozen image encoder (before ``ln_vision``, which may train) under
one image transform, for every image it has seen; :mod:`lavis.datasets.feature_cache` fills it
and reads it in the data pipeline.

Layout: ``<cache_dir>/<store id>/`` where the store id is a sha256 of the store's identity: the
encoder's settings that change its output, a sha256 of every encoder tensor in full, the transform
config, a version derived from the encoder's, the transform's and the image decoder's source code
(:func:`lavis.common.source_digest.source_digest`), and the storage dtype. So a different encoder,
transform or code never sees another's features. Inside, ``seg-*.bin`` are raw
``(rows, tokens, width)`` fp16/bf16 arrays (bf16 stored as 16-bit integers) read with
``np.memmap``, and ``index.json`` maps each image key - the sha256 of the image's bytes
(:mod:`lavis.datasets.image_hashes`) - to ``[segment, row]``. Files are written under temporary
names and renamed; ``index.json`` is replaced last, so readers see the old or the new cache, never
half. Each writer adds its own segment and part file; :meth:`FeatureStore.merge` adds the parts to
``index.json`` under a file lock, so concurrent writers sharing the cache cannot lose each other's
entries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lavis.common.checkpoint import atomic_write_text
from lavis.common.disk import human_bytes
from lavis.common.errors import DataError
from lavis.common.locks import locked
from lavis.common.output_lock import OutputFolderError
from lavis.common.schema import plain
from lavis.common.source_digest import source_digest
from lavis.common.tensor_digest import weights_digest
from lavis.datasets import image_io

_RESERVE = 1 << 20  # the index and part files beside the segments
VERSION = 2  # the store's file format (2: keys are content hashes, features before ln_vision)
INDEX = "index.json"
STORAGE = {"fp16": (np.float16, torch.float16), "bf16": (np.int16, torch.bfloat16)}  # bf16 bits in int16
# Encoder settings that cannot change its output: the weights are hashed in full whatever file
# they came from, checkpointing only saves memory, and a cached encoder is always frozen.
_NOT_OUTPUT = ("pretrained", "use_grad_checkpoint", "freeze")


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


# ---- identities ------------------------------------------------------------------------------
def encoder_identity(model: Any, weights: str | None = None) -> dict[str, Any]:
    """What the cached features depend on in the model: the encoder's output-changing settings,
    its weights (``weights``: a :func:`weights_digest` already computed), output shape and code."""
    encoder = model.visual_encoder
    vision = {key: value for key, value in plain(model.cfg.vision).items() if key not in _NOT_OUTPUT}
    code = source_digest(
        [*{type(module) for module in encoder.modules()}, type(model).encode_image_frozen],
        follow=["lavis.models.vision"],
    )
    return {
        "vision": vision,
        "weights": weights or weights_digest([encoder]),
        "tokens": int(encoder.num_tokens),
        "width": int(encoder.num_features),
        "code": code,
    }


def transform_identity(processor: Any) -> dict[str, Any]:
    """The image transform: class, config, and the code from image bytes to tensor."""
    cfg = processor.cfg
    config = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else repr(cfg)
    code = source_digest([type(processor), image_io], follow=["lavis.processors", "lavis.datasets.image_io"])
    return {"class": f"{type(processor).__module__}.{type(processor).__qualname__}", "config": config, "code": code}


# ---- the on-disk store -------------------------------------------------------------------------
class FeatureStore:
    """One (encoder, transform, dtype) store: segments of features plus the image-key index."""

    def __init__(self, root: str | os.PathLike, identity: dict[str, Any], dtype: str = "fp16") -> None:
        if dtype not in STORAGE:
            raise DataError(f"feature cache dtype must be one of {sorted(STORAGE)}, got {dtype!r}")
        # Round-tripped through JSON so that it compares equal to what index.json holds.
        self.identity = json.loads(json.dumps({**identity, "dtype": dtype, "version": VERSION}, default=str))
        self.root = Path(root)
        self.dir = self.root / digest(self.identity)[:24]
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
    def segment_bytes(self, rows: int) -> int:
        return rows * self.tokens * self.width * 2  # fp16 and bf16 alike

    def room_problem(self, rows: int) -> str | None:
        """Why ``rows`` more features do not fit on the cache's disk, or None."""
        self.dir.mkdir(parents=True, exist_ok=True)
        needed, free = self.segment_bytes(rows), shutil.disk_usage(self.dir).free
        if needed + _RESERVE <= free:
            return None
        return (f"feature cache {self.dir}: the features of {rows} images need {human_bytes(needed + _RESERVE)} and "
                f"{human_bytes(free)} are free; free space, set run.feature_cache_dir on a larger disk, "
                "or run.feature_cache=off")

    def write_segment(self, features: Iterator[tuple[list[str], torch.Tensor]], tag: str) -> Path | None:
        """Write the rows of ``(keys, (B, tokens, width) tensor)`` batches as a new segment;
        returns its part file (for :meth:`merge`), or None when nothing was written.

        Written with plain writes, not through a memory map: a full disk is then an OSError at
        the write (a one-line error here), where a mapped page that finds no room is a SIGBUS
        that kills the process and leaves the folder locked."""
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"seg-{tag}.bin"
        tmp = self.dir / f".{name}.tmp"
        rows: list[str] = []
        try:
            with open(tmp, "wb") as handle:
                for keys, embeds in features:
                    handle.write(self._storage_bytes(embeds))
                    rows.extend(keys)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise OutputFolderError(f"feature cache {self.dir}: cannot write {tmp.name}: {err.strerror or err}; "
                                    "free space, set run.feature_cache_dir on a larger disk, or run.feature_cache=off") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if not rows:
            tmp.unlink(missing_ok=True)
            return None
        os.replace(tmp, self.dir / name)
        part = self.dir / f".part-{tag}.json"
        atomic_write_text(part, json.dumps({"file": name, "keys": rows}))
        return part

    def _storage_bytes(self, embeds: torch.Tensor) -> bytes:
        half = embeds.to(STORAGE[self.dtype][1])
        if self.dtype == "fp16" and torch.isinf(half).any() and torch.isfinite(embeds).all():
            raise DataError(
                f"feature cache {self.dir}: encoder outputs exceed the fp16 range (max "
                f"{embeds.abs().max().item():.3g}); set run.feature_cache_dtype=bf16"
            )
        half = half.view(torch.int16) if self.dtype == "bf16" else half
        return half.contiguous().cpu().numpy().tobytes()

    def merge(self, parts: Sequence[Path]) -> None:
        """Add written segments to ``index.json`` (read-modify-write under a file lock)."""
        with locked(self.dir / ".lock"):
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
