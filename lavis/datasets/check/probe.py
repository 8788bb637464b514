"""Decode every image once, in DataLoader workers, and classify it: ok, missing or unreadable.

"Present" is not enough: a truncated JPEG or an HTML error page saved as ``.jpg`` is on disk and
still kills (or silently skips) samples in hour three, so each image is really decoded, by the
same reader the data sets use (``lavis.datasets.image_io``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from lavis.datasets.bad_data import SkippedSample
from lavis.datasets.image_io import DEFAULT_MAX_PIXELS, load_image, load_image_bytes

OK, MISSING, UNREADABLE = 0, 1, 2
STATUS_NAMES = ("ok", "missing", "unreadable")
MISSING_REASON = "file not found"


@dataclasses.dataclass
class ProbeResult:
    """Per probed image: its status code and, for bad ones, the reason."""

    status: np.ndarray  # int8, one of OK / MISSING / UNREADABLE
    reasons: dict[int, str]

    def counts(self, index: np.ndarray | None = None) -> dict[str, int]:
        codes = self.status if index is None else self.status[index]
        found = np.bincount(codes, minlength=3)
        return {"images": int(codes.size), "present": int(found[OK] + found[UNREADABLE]),
                "readable": int(found[OK]), "missing": int(found[MISSING]), "unreadable": int(found[UNREADABLE])}


class _Images(Dataset):
    """Item i: (i, status, reason) of image i, from a file or from the Arrow bytes column."""

    def __init__(self, files: Sequence[Path | None], blobs: pa.Array | None, rows: Sequence[int] | None,
                 max_pixels: int) -> None:
        self.files, self.blobs, self.rows, self.max_pixels = list(files), blobs, rows, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, int, str]:
        file = self.files[index]
        if file is not None:
            result = load_image(file, max_pixels=self.max_pixels)
        else:
            data = self.blobs[self.rows[index]].as_py()
            result = load_image_bytes(data, f"row {self.rows[index] + 1}", max_pixels=self.max_pixels)
        if not isinstance(result, SkippedSample):
            return index, OK, ""
        return index, MISSING if result.reason == MISSING_REASON else UNREADABLE, result.reason


def _as_list(batch: list) -> list:
    return batch


def probe_images(
    files: Sequence[Path | None],
    blobs: pa.Array | None = None,
    rows: Sequence[int] | None = None,
    workers: int = 4,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    desc: str = "images",
) -> ProbeResult:
    """Decode ``files`` (paths; None where the bytes are row ``rows[i]`` of ``blobs``)."""
    dataset = _Images(files, blobs, rows, max_pixels)
    status = np.zeros(len(dataset), dtype=np.int8)
    reasons: dict[int, str] = {}
    loader = DataLoader(dataset, batch_size=64, num_workers=workers, collate_fn=_as_list)
    with tqdm(total=len(dataset), desc=desc, unit="img", mininterval=1.0) as bar:
        for batch in loader:
            for index, code, reason in batch:
                status[index] = code
                if code != OK:
                    reasons[index] = reason
            bar.update(len(batch))
    return ProbeResult(status, reasons)
