"""``MANIFEST.json``: what a download put under its root, so reruns and other tools can trust it.

    {"name": "pathvqa", "form": "parquet", "repo_id": "...", "revision": "<commit>",
     "requested_revision": "main", "endpoint": "https://huggingface.co", "date": "...Z",
     "files": [{"path": "data/test-00000-of-00001.parquet", "size": 123, "sha256": "..."}],
     "archives": [{"file": "quilt_vqa.zip", "sha256": "...", "into": "images", "strip": "...",
                   "files": 985, "bytes": 123}],
     "layout": {"test": {"rows": 1283, "image_folder": "images", "images_missing": 0}}}

Written atomically; the revision recorded here is what the next run fetches unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

from lavis.common.checkpoint import atomic_write_text
from lavis.common.errors import DataError

MANIFEST = "MANIFEST.json"


@dataclasses.dataclass
class Manifest:
    name: str
    form: str
    repo_id: str
    revision: str
    requested_revision: str
    endpoint: str
    date: str = ""
    files: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    archives: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    layout: dict[str, Any] = dataclasses.field(default_factory=dict)

    def file(self, path: str) -> dict[str, Any] | None:
        return next((f for f in self.files if f["path"] == path), None)

    def archive(self, file: str) -> dict[str, Any] | None:
        return next((a for a in self.archives if a["file"] == file), None)


def read_manifest(root: Path) -> Manifest | None:
    path = root / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(**data)
    except (ValueError, TypeError) as err:
        raise DataError(f"{path}: not a manifest written by lavis.datasets.download ({err}); move it away") from None


def write_manifest(root: Path, manifest: Manifest) -> Path:
    manifest.date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = root / MANIFEST
    atomic_write_text(path, json.dumps(dataclasses.asdict(manifest), indent=1) + "\n")
    return path
