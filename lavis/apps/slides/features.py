"""Per-slide cache of the frozen image encoder's outputs, so a second question on a slide costs
only the Q-Former and the language model.

A cache folder is ``<root>/<key>/``; the key is a sha256 of what the features depend on: the
slide's content (OpenSlide quickhash or file sha256, not its path), the tiles (read plan and the
digest of their level-0 origins), the image transform, the frozen encoder (config and a digest
of its weights; :func:`lavis.datasets.feature_store.encoder_identity`) and the storage dtype.
Anything else gets another folder, never stale features.

Inside, each written batch is one ``seg-<first>-<count>.safetensors`` file holding the features
of tiles ``first .. first+count-1`` (tile numbers of the tissue-tile list). Files are written
under a temporary name and renamed, so concurrent ranks and a killed run leave only whole files;
the folder listing is the index (no shared file to lock). Segments may overlap (a rerun with
another ``--batch``); any segment holding a tile serves it.

Features are stored in the precision the encoder runs in (fp16/bf16 for a half-precision
encoder, else fp32), and freshly computed features take the same round trip before they are
used, so an answer never depends on whether its features came from the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lavis.common.checkpoint import atomic_write_bytes, atomic_write_text

VERSION = 1
_SEGMENT = re.compile(r"^seg-(\d+)-(\d+)\.safetensors$")


def storage_dtype(model: Any) -> torch.dtype:
    """The dtype cached features are kept in: the encoder's own when it runs in half precision."""
    dtype = getattr(model.visual_encoder, "dtype", torch.float32)
    return dtype if dtype in (torch.float16, torch.bfloat16) else torch.float32


def tiles_digest(origins: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(origins, dtype=np.int64).tobytes()).hexdigest()


def cache_identity(model: Any, vis_processor: Any, content_id: str, plan: dict[str, Any], origins: np.ndarray) -> dict[str, Any]:
    """Everything a tile's cached features depend on."""
    from lavis.datasets.feature_store import encoder_identity, transform_identity

    return {
        "version": VERSION,
        "slide": content_id,
        "plan": plan,
        "tiles": tiles_digest(origins),
        "transform": transform_identity(vis_processor),
        "encoder": encoder_identity(model),
        "dtype": str(storage_dtype(model)),
    }


class SlideFeatureCache:
    """Read and add the features of one slide's tiles for one encoder and transform."""

    def __init__(self, root: str | os.PathLike, identity: dict[str, Any], dtype: torch.dtype) -> None:
        key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]
        self.folder = Path(root) / key
        self.identity = identity
        self.dtype = dtype
        self._where: dict[int, tuple[Path, int]] = {}  # tile -> (segment file, row)
        self._open: dict[Path, Any] = {}

    def open(self) -> SlideFeatureCache:
        """Create the folder (identity.json once) and index the segments already there."""
        self.folder.mkdir(parents=True, exist_ok=True)
        identity_file = self.folder / "identity.json"
        if not identity_file.exists():
            atomic_write_text(identity_file, json.dumps(self.identity, indent=1, sort_keys=True, default=str))
        for stale in self.folder.glob(".*.tmp"):  # a writer killed mid-file; an hour old cannot be in flight
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > 3600:
                    stale.unlink()
        for path in sorted(self.folder.glob("seg-*.safetensors")):
            match = _SEGMENT.match(path.name)
            if match:
                self._index(path, int(match.group(1)), int(match.group(2)))
        return self

    def _index(self, path: Path, first: int, count: int) -> None:
        for row in range(count):
            self._where.setdefault(first + row, (path, row))

    def has(self, tiles: list[int]) -> bool:
        return all(t in self._where for t in tiles)

    def __len__(self) -> int:
        return len(self._where)

    def get(self, tiles: list[int]) -> torch.Tensor:
        """(len(tiles), tokens, width) features in the storage dtype (every tile must be cached)."""
        from safetensors import safe_open

        rows = []
        for tile in tiles:
            path, row = self._where[tile]
            handle = self._open.get(path)
            if handle is None:
                handle = self._open[path] = safe_open(str(path), framework="pt")
            rows.append(handle.get_slice("features")[row : row + 1])
        return torch.cat(rows, dim=0)

    def put(self, tiles: list[int], features: torch.Tensor) -> None:
        """Store the features of consecutive tiles ``tiles`` (one batch) as a new segment."""
        from safetensors.torch import save

        first, count = tiles[0], len(tiles)
        if tiles != list(range(first, first + count)):
            raise ValueError("a segment holds consecutive tiles")
        path = self.folder / f"seg-{first:09d}-{count:06d}.safetensors"
        data = save({"features": features.detach().to("cpu", self.dtype).contiguous()})
        atomic_write_bytes(path, data)
        self._index(path, first, count)

    def close(self) -> None:
        self._open.clear()


def round_trip(features: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``features`` as they would come back from the cache (stored in ``dtype``), as float32."""
    return features.to(dtype).float() if dtype != torch.float32 else features.float()
