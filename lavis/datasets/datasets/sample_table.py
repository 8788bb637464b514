"""A map-style dataset over a pyarrow table whose columns are named by the sample contract.

Every file-based data set (Quilt-1M, the VQA sets, instructions, image folders) is parsed once
at build time into a table with ``image_path`` (and optionally ``image_bytes``), ``text_input``
and the other contract keys; this class turns row ``i`` into a sample. Columns live in Arrow
buffers, not Python objects, so forked DataLoader workers do not copy a million small strings
through reference counting.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
from torch.utils.data import Dataset

from lavis.datasets.bad_data import SkippedSample
from lavis.datasets.image_io import DEFAULT_MAX_PIXELS, load_image, load_image_bytes

IMAGE_BYTES = "image_bytes"


class SampleTable(Dataset):
    """Row -> ``{"image": processed image, "text_input": processed text, other columns as is}``.

    ``image_bytes`` (when present and not null) holds the encoded image; otherwise the image is
    read from ``image_root / image_path``. Unreadable images give a ``SkippedSample``.
    """

    def __init__(
        self,
        table: pa.Table,
        image_root: str | os.PathLike | None,
        vis_processor: Any = None,
        text_processor: Any = None,
        strict: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        for required in ("image_path", "text_input"):
            if required not in table.column_names:
                raise ValueError(f"SampleTable needs a '{required}' column, got {table.column_names}")
        table = table.combine_chunks()
        self._columns = {name: _single_chunk(table.column(name)) for name in table.column_names}
        self._bytes = self._columns.pop(IMAGE_BYTES, None)
        self._length = table.num_rows
        self.image_root = Path(image_root) if image_root is not None else None
        self.vis_processor = vis_processor
        self.text_processor = text_processor
        self.strict = strict
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return self._length

    def column(self, name: str) -> list[Any]:
        """A whole column as Python values (for inspection and tests, not the hot path)."""
        return self._columns[name].to_pylist()

    def images_in_table(self) -> list[bool] | None:
        """Per row, whether its image comes from the ``image_bytes`` column rather than a file;
        None when the table holds no image bytes at all."""
        return None if self._bytes is None else self._bytes.is_valid().to_pylist()

    def image_bytes(self, index: int) -> pa.Buffer | None:
        """Row ``index``'s encoded image held in the table (no copy), or None when it is a file."""
        if self._bytes is None or not self._bytes[index].is_valid:
            return None
        return self._bytes[index].as_buffer()

    def row(self, index: int) -> dict[str, Any]:
        """Row ``index`` as Python values, without reading or processing its image."""
        if not 0 <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} samples")
        return {name: column[index].as_py() for name, column in self._columns.items()}

    def _image(self, index: int, path: str) -> Any:
        data = self._bytes[index].as_py() if self._bytes is not None else None
        if data is not None:
            return load_image_bytes(data, path, self.strict, self.max_pixels)
        full = self.image_root / path if self.image_root is not None else Path(path)
        return load_image(full, self.strict, self.max_pixels)

    def __getitem__(self, index: int) -> dict[str, Any] | SkippedSample:
        item = self.row(index)
        image = self._image(index, item["image_path"])
        if self.text_processor is not None:
            item["text_input"] = self.text_processor(item["text_input"])
        if isinstance(image, SkippedSample):
            return dataclasses.replace(image, fields=item)  # the question stays known (evaluation counts it)
        item["image"] = self.vis_processor(image) if self.vis_processor is not None else image
        return item


def _single_chunk(column: pa.ChunkedArray) -> pa.Array:
    if column.num_chunks == 1:
        return column.chunk(0)
    return pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], column.type)
