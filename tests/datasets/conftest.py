"""Fixtures that write data files in their real formats: JPEG/PNG crops of a real IHC slide image
(scikit-image), JSON/JSONL, CSV, parquet (pyarrow) and pickle."""

from __future__ import annotations

import csv
import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image


class DataWriter:
    """Writes fixture files; images are distinct crops of a real stained tissue image."""

    def __init__(self, tissue: np.ndarray) -> None:
        self.tissue = tissue
        self._next = 0

    def image(self, size: tuple[int, int] = (40, 32), index: int | None = None) -> Image.Image:
        if index is None:
            index, self._next = self._next, self._next + 1
        y, x = (index * 37) % (self.tissue.shape[0] - size[1]), (index * 53) % (self.tissue.shape[1] - size[0])
        return Image.fromarray(self.tissue[y : y + size[1], x : x + size[0]])

    def image_bytes(self, fmt: str = "JPEG", **kwargs: Any) -> bytes:
        buffer = io.BytesIO()
        self.image(**kwargs).save(buffer, format=fmt)
        return buffer.getvalue()

    def image_file(self, path: Path, **kwargs: Any) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = Image.registered_extensions().get(path.suffix.lower(), "JPEG")  # .png, .bmp, ...
        path.write_bytes(self.image_bytes(fmt, **kwargs))
        return path

    @staticmethod
    def json(path: Path, data: Any) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
        return path

    @staticmethod
    def jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return path

    @staticmethod
    def csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        return path

    @staticmethod
    def parquet(path: Path, columns: dict[str, list[Any]]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), path)
        return path

    @staticmethod
    def pickle(path: Path, data: Any) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(data))
        return path


@pytest.fixture(scope="session")
def tissue() -> np.ndarray:
    from skimage import data

    return data.immunohistochemistry()


@pytest.fixture()
def write(tissue: np.ndarray) -> DataWriter:
    return DataWriter(tissue)


@pytest.fixture()
def build():
    """Build a registered data set from its defaults YAML overlaid with ``overrides``."""
    from omegaconf import OmegaConf

    from lavis.common.paths import config_path
    from lavis.datasets import BUILDERS

    def _build(name: str, **overrides: Any) -> dict[str, Any]:
        builder_cls = BUILDERS.get(name)
        defaults = OmegaConf.load(config_path(builder_cls.DEFAULT_CONFIG)).datasets[name]
        section = OmegaConf.merge(defaults, OmegaConf.create(overrides))
        return builder_cls.from_config(section, name).build()

    return _build
