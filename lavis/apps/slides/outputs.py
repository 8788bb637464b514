"""The files a finished question leaves: the tiles table and the QuPath-ready GeoJSON.

``regions.geojson`` is a FeatureCollection with one Polygon per analysed tile, in level-0 pixel
coordinates (x right, y down; the ring is closed and runs x, then y, as QuPath writes it). Each
feature's ``properties`` hold what QuPath reads (``objectType: "tile"``, a ``classification``
{name, color}, and ``measurements`` {name: number}, so Measure > Show measurement maps colours
the tiles by score) and the same values as plain properties (``score``, ``answer``, ``tile``,
``question``) for other GIS tools. Feature ids are UUIDs derived from the slide, the question and
the tile, so a rerun writes identical files.
"""

from __future__ import annotations

import io
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lavis.common.checkpoint import atomic_write_bytes, atomic_write_text

YES_COLOUR = [214, 39, 40]
NO_COLOUR = [31, 119, 180]
MATCH_COLOUR = [255, 127, 14]


def tiles_frame(origins: np.ndarray, size: int, level: int, tissue: np.ndarray, scores: list[float | None],
                answers: list[str]) -> pd.DataFrame:
    """One row per analysed tile: tile number, level-0 box, level read, tissue share, score, answer."""
    return pd.DataFrame({
        "tile": np.arange(len(origins), dtype=np.int64),
        "x": origins[:, 0].astype(np.int64),
        "y": origins[:, 1].astype(np.int64),
        "size": np.full(len(origins), size, dtype=np.int64),
        "level": np.full(len(origins), level, dtype=np.int64),
        "tissue": np.round(tissue.astype(np.float64), 4),
        "score": np.array([np.nan if s is None else s for s in scores], dtype=np.float64),
        "answer": pd.array(answers, dtype="string"),
    })


def write_table(frame: pd.DataFrame, folder: Path, kind: str) -> Path:
    """``tiles.parquet`` (or ``tiles.csv``), written atomically."""
    if kind == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        path = folder / "tiles.parquet"
        atomic_write_bytes(path, buffer.getvalue())
        return path
    path = folder / "tiles.csv"
    atomic_write_text(path, frame.to_csv(index=False))
    return path


def read_table(folder: str | os.PathLike) -> pd.DataFrame:
    folder = Path(folder)
    parquet = folder / "tiles.parquet"
    return pd.read_parquet(parquet) if parquet.exists() else pd.read_csv(folder / "tiles.csv", keep_default_na=False)


def classification(mode: str, score: float | None, answer: str) -> dict[str, Any] | None:
    if mode == "closed" and score is not None:
        return {"name": "yes", "color": YES_COLOUR} if score >= 0.5 else {"name": "no", "color": NO_COLOUR}
    if mode == "open" and answer:
        return {"name": answer[:60], "color": _colour_for(answer)}
    return None


def _colour_for(text: str) -> list[int]:
    """A stable colour per answer text (QuPath draws each class in its colour)."""
    digest = uuid.uuid5(uuid.NAMESPACE_URL, text).bytes
    return [64 + digest[0] % 160, 64 + digest[1] % 160, 64 + digest[2] % 160]


def geojson(frame: pd.DataFrame, mode: str, question: str, namespace: str) -> dict[str, Any]:
    """The FeatureCollection of ``frame``'s tiles (see the module docstring)."""
    base = uuid.uuid5(uuid.NAMESPACE_URL, f"lavis.apps.slides:{namespace}:{mode}:{question}")
    features = []
    for row in frame.itertuples(index=False):
        x, y, s = int(row.x), int(row.y), int(row.size)
        score = None if row.score is None or (isinstance(row.score, float) and math.isnan(row.score)) else float(row.score)
        answer = "" if row.answer is None or row.answer is pd.NA else str(row.answer)
        measurements = {"tissue": float(row.tissue)}
        if score is not None:
            measurements["score"] = score
        properties: dict[str, Any] = {
            "objectType": "tile",
            "name": f"{score:.3f}" if score is not None else answer[:60],
            "measurements": measurements,
            "tile": int(row.tile),
            "score": score,
            "answer": answer,
            "question": question,
            "mode": mode,
        }
        cls = classification(mode, score, answer)
        if cls is not None:
            properties["classification"] = cls
        features.append({
            "type": "Feature",
            "id": str(uuid.uuid5(base, str(int(row.tile)))),
            "geometry": {"type": "Polygon", "coordinates": [[[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]]},
            "properties": properties,
        })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(collection: dict[str, Any], folder: Path) -> Path:
    path = folder / "regions.geojson"
    atomic_write_text(path, json.dumps(collection, separators=(",", ":")) + "\n")
    return path


def write_json(path: Path, value: Any) -> Path:
    atomic_write_text(path, json.dumps(value, indent=1, default=_plain) + "\n")
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
