"""The webdataset tar shard format: what ``make_shards`` writes and the stream reads.

A shard is a plain tar; a sample is the consecutive members sharing a key (the member name up to
the first dot of its base name): ``<key>.<image ext>`` holds the original image bytes and
``<key>.json`` the annotation row (with ``image_id``). Writes are atomic (temp file + rename)
and reproducible (fixed mtime/owner), so a re-run gives byte-identical shards.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "tif", "tiff", "webp", "bmp")
MANIFEST = "shards.json"


class ShardReadError(Exception):
    """A shard is unreadable or ends early; ``samples_read`` samples came out before the fault."""

    def __init__(self, path: str, reason: str, samples_read: int) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.samples_read = samples_read


def write_shard(path: Path, samples: Iterable[tuple[str, dict[str, bytes]]]) -> int:
    """Write ``(key, {ext: bytes})`` samples to ``path`` atomically; return how many."""
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.mode = 0o644
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
            count += 1
    os.replace(tmp, path)
    return count


def split_member_name(name: str) -> tuple[str, str]:
    """``dir/000123.jpg`` -> (``dir/000123``, ``jpg``); the extension is everything after the first dot."""
    folder, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(folder, stem) if folder else stem, ext.lower()


def iter_shard(path: str | os.PathLike) -> Iterator[dict[str, bytes | str]]:
    """Samples of one shard as ``{"__key__": key, ext: bytes, ...}``, in stored order."""
    current: dict[str, bytes | str] = {}
    read = 0
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = split_member_name(member.name)
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if current and current["__key__"] != key:
                    yield current
                    read += 1
                    current = {}
                current.setdefault("__key__", key)
                current[ext] = data
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ShardReadError(str(path), f"unreadable or truncated shard ({err})", read) from None
    if current:
        yield current
