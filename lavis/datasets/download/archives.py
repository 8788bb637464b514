"""Unpack an image zip so that ``<into>/<name>`` is exactly the path a builder opens.

Releases differ in how deep their zips nest the images (``images/x.jpg``, ``quilt_vqa/x.jpg``,
``figures/x.jpg``): the folder level to strip is chosen as the one under which the most names of
the data set's own annotation file are found. Members are written one by one through a temp
file and a rename; members already there with the right size are skipped, so an interrupted
extraction continues. Names that would leave the folder (absolute, ``..``) are refused.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from lavis.common.errors import DataError, DownloadError

_JUNK = ("__MACOSX/", ".DS_Store", "Thumbs.db")


@dataclasses.dataclass
class Extracted:
    files: int
    bytes: int
    strip: str  # the folder prefix removed from member names
    written: int  # members written by this run (0 when everything was already there)


def _members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    return [
        info for info in archive.infolist()
        if not info.is_dir() and not any(part in info.filename for part in _JUNK)
    ]


def annotation_names(path: Path, field: str) -> set[str]:
    """The image names an annotation file refers to (JSONL lines, a JSON list, or a CSV column)."""
    from lavis.datasets.annotations import read_csv, read_json_list, read_jsonl

    if path.suffix == ".csv":
        values: Iterable = read_csv(path, [field]).column(field).to_pylist()
    else:
        records = read_jsonl(path) if path.suffix == ".jsonl" else read_json_list(path)
        values = (record.get(field) for record in records if isinstance(record, dict))
    return {str(PurePosixPath(value)) for value in values if value}


def choose_prefix(names: list[str], wanted: set[str]) -> str:
    """The folder prefix whose removal turns the most member names into wanted names; with no
    wanted names, the longest folder prefix all members share."""
    prefixes: Counter[str] = Counter()
    for name in names:
        parts = name.split("/")[:-1]
        for depth in range(len(parts) + 1):
            prefix = "/".join(parts[:depth]) + ("/" if depth else "")
            if name[len(prefix):] in wanted:
                prefixes[prefix] += 1
    if prefixes:
        return min(prefixes, key=lambda p: (-prefixes[p], len(p)))
    common = os.path.commonpath(names) if names else ""
    if len(names) == 1:
        common = str(PurePosixPath(names[0]).parent)
    return "" if common in ("", ".") else common.rstrip("/") + "/"


def _safe_target(into: Path, relative: str, archive: Path) -> Path:
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not relative:
        raise DataError(f"{archive}: member '{relative}' would be written outside {into}; refusing the archive")
    return into.joinpath(*pure.parts)


def extract(archive_path: Path, into: Path, wanted: set[str], progress: Callable[[int], None] | None = None) -> Extracted:
    """Unpack ``archive_path`` into ``into`` (see the module doc); returns what is there now."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DownloadError(f"{archive_path}: not a readable zip archive ({err})") from None
    with archive:
        members = _members(archive)
        strip = choose_prefix([m.filename for m in members], wanted)
        written = total = count = 0
        for info in members:
            if not info.filename.startswith(strip):
                continue  # outside the chosen folder (e.g. a readme beside the images)
            target = _safe_target(into, info.filename[len(strip):], archive_path)
            count += 1
            total += info.file_size
            if target.is_file() and target.stat().st_size == info.file_size:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out, archive.open(info) as source:
                    shutil.copyfileobj(source, out, 1 << 20)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            written += 1
            if progress is not None:
                progress(1)
    if count == 0:
        raise DataError(f"{archive_path}: no files found in the archive")
    return Extracted(count, total, strip, written)


def extracted_complete(archive_path: Path, into: Path, strip: str) -> bool:
    """Whether every member under ``strip`` is present in ``into`` with its size (no reading)."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = [m for m in _members(archive) if m.filename.startswith(strip)]
    except (zipfile.BadZipFile, OSError):
        return False
    for info in members:
        target = into.joinpath(*PurePosixPath(info.filename[len(strip):]).parts)
        if not target.is_file() or target.stat().st_size != info.file_size:
            return False
    return bool(members)
