"""Webdataset tar shards, read and written through the ``webdataset`` library.

A shard is a plain tar; a sample is the consecutive members sharing a key (the member name up to
the first dot of its base name). Shards as the ecosystem writes them (``webdataset.ShardWriter``,
img2dataset) are read as they are: string keys, the image under any common extension, the
caption in ``<key>.txt`` and/or a field of ``<key>.json``, no image id required. ``make_shards``
writes that layout too (plus the CSV row, with ``image_id``, in the JSON), atomically (temp file +
rename) and reproducibly (fixed mtime), so a re-run gives byte-identical shards.

Shard specs are local globs under the data set's storage or what ``webdataset`` opens: URLs
(``http(s)://``, ``file:``), ``pipe:`` commands, brace ranges (``{000000..000099}``) and
``::``-joined lists. webdataset resolves, opens and splits the tars into samples; which shards
and samples a rank and worker reads stays ours (``quilt1m_stream``), for exactly-once and exact resume.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from webdataset.shardlists import expand_urls
from webdataset.tariterators import group_by_keys, tar_file_expander, url_opener
from webdataset.writer import ShardWriter

from lavis.datasets.annotations import data_files

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "tif", "tiff", "webp", "bmp")
MANIFEST = "shards.json"


class ShardReadError(Exception):
    """A shard is unreadable or ends early; ``samples_read`` samples came out before the fault."""

    def __init__(self, path: str, reason: str, samples_read: int) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.samples_read = samples_read


def is_url(spec: str) -> bool:
    """A shard spec webdataset opens itself (not a local path or glob)."""
    return "://" in spec or spec.startswith(("pipe:", "file:"))


def expand_shards(spec: str, root: Callable[[], Path], key: str) -> list[str]:
    """Every shard of ``spec``: braces and ``::`` lists expanded by webdataset, URLs kept as they
    are, local entries globbed under ``root()`` (sorted; an entry matching nothing is an error)."""
    shards: list[str] = []
    for entry in expand_urls(spec):
        shards.extend([entry] if is_url(entry) else [str(p) for p in data_files(root(), entry, key)])
    return shards


def iter_shard(url: str) -> Iterator[dict[str, Any]]:
    """Samples of one shard as ``{"__key__": key, "__url__": url, ext: bytes, ...}``, in stored order."""
    read = 0
    try:
        for sample in group_by_keys(tar_file_expander(url_opener([{"url": str(url)}]))):
            read += 1
            yield sample
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:  # webdataset passes these through
        raise ShardReadError(str(url), f"unreadable or truncated shard ({err})", read) from None


def image_member(sample: dict[str, Any]) -> str | None:
    """The extension of the sample's image member, if it has one."""
    return next((ext for ext in IMAGE_EXTENSIONS if ext in sample), None)


class AtomicShardWriter:
    """``webdataset.ShardWriter`` writing each shard to a temp file renamed into place when complete;
    ``counts`` lists (file name, samples) of the finished shards."""

    def __init__(self, pattern: Path, max_count: int) -> None:
        self._open: dict[str, Any] = {}
        self.counts: list[tuple[str, int]] = []
        self._writer = ShardWriter(str(pattern), maxcount=max_count, opener=self._opener, post=self._finished,
                                   encoder=False, mtime=0, verbose=0)  # fmt: skip

    def _opener(self, name: str) -> Any:
        self._open[name] = handle = open(name + ".tmp", "wb")  # closed in _finished, once the tar is complete
        return handle

    def _finished(self, name: str) -> None:
        self._open.pop(name).close()
        os.replace(name + ".tmp", name)
        self.counts.append((Path(name).name, self._writer.count))

    def write(self, key: str, members: dict[str, bytes]) -> None:
        self._writer.write({"__key__": key, **members})

    def close(self) -> None:
        self._writer.close()
