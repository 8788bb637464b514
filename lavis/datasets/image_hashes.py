"""Content keys of images for the feature cache: a sha256 of the image's bytes.

A file is hashed once and remembered in ``<cache_dir>/image_hashes.arrow`` by its identity on
disk: absolute path (so the data root is part of it), size, mtime_ns, ctime_ns, inode and device.
Any write to a file changes its ctime, and replacing it (``rsync -a``, ``cp``, an editor's save)
changes its inode, so a changed file is re-read even when its size and mtime were kept; an
unchanged file costs one ``stat``. Images held in a table (parquet ``image_bytes``) are hashed
from memory every time (no file identity to remember them by).

The hashes key features across data sets: two files with the same bytes share features (the
transform and encoder are part of the store's identity), two files with the same relative path
under different roots never do unless their bytes are the same.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lavis.common.checkpoint import atomic_write_bytes
from lavis.common.dist import all_gather_object, get_rank, get_world_size, is_main_process
from lavis.common.errors import DataError
from lavis.common.locks import locked
from lavis.datasets.datasets.sample_table import SampleTable

INDEX = "image_hashes.arrow"
_FIELDS = ("size", "mtime_ns", "ctime_ns", "inode", "device")
_SCHEMA = pa.schema([("path", pa.string()), *((name, pa.int64()) for name in _FIELDS), ("sha256", pa.string())])
_PROBE = 64  # stats timed to tell a local disk from a network file system
_SLOW_STAT_S = 2e-4

FileId = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device


def sha256_bytes(data: Any) -> str:
    """sha256 of a bytes-like object (Arrow buffers are hashed in place)."""
    return hashlib.sha256(memoryview(data)).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def missing_key(path: str) -> str:
    """The key of a file that cannot be stat'ed or read: never a content hash, never cached."""
    return hashlib.sha256(f"unreadable\0{path}".encode()).hexdigest()


def file_id(path: str) -> FileId | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


class ImageHashIndex:
    """``(absolute path, file identity) -> sha256`` kept in one Arrow file under ``root``.

    Adding entries rewrites the file from Arrow columns (no Python objects for the old entries);
    a million entries (156 MB) load in about 2 s, and a lookup is a dict access.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.path = Path(root) / INDEX
        self._use(self._read() if self.path.exists() else _SCHEMA.empty_table())

    def _read(self) -> pa.Table:
        try:
            with pa.memory_map(str(self.path)) as source:
                table = pa.ipc.open_file(source).read_all()
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"{self.path}: unreadable image-hash index ({err}); delete it to rebuild") from None
        if table.schema != _SCHEMA:
            raise DataError(f"{self.path}: unexpected columns {table.schema.names}; delete it to rebuild")
        return table.combine_chunks()

    def _use(self, table: pa.Table) -> None:
        self._table = table
        self._rows = {path: row for row, path in enumerate(table.column("path").to_pylist())}
        self._ids = list(zip(*(table.column(name).to_pylist() for name in _FIELDS)))
        self._digests = table.column("sha256").to_pylist()

    def __len__(self) -> int:
        return len(self._rows)

    def paths(self) -> list[str]:
        return list(self._rows)

    def lookup(self, path: str, ident: FileId) -> str | None:
        row = self._rows.get(path)
        if row is None or self._ids[row] != ident:
            return None
        return self._digests[row]

    def add(self, new: dict[str, tuple[FileId, str]]) -> None:
        """Remember ``new`` and write the index (read-modify-write under a lock: concurrent runs
        sharing the cache keep each other's entries; a path's newer entry replaces its older one)."""
        if not new:
            return
        paths = list(new)
        columns = [pa.array(paths, pa.string())]
        columns += [pa.array([new[p][0][i] for p in paths], pa.int64()) for i in range(len(_FIELDS))]
        columns.append(pa.array([new[p][1] for p in paths], pa.string()))
        added = pa.Table.from_arrays(columns, schema=_SCHEMA)
        with locked(self.path.with_name(f".{INDEX}.lock")):
            current = self._read() if self.path.exists() else _SCHEMA.empty_table()
            kept = current.filter(pc.invert(pc.is_in(current.column("path"), value_set=added.column("path"))))
            merged = pa.concat_tables([kept, added]).combine_chunks()
            sink = pa.BufferOutputStream()
            with pa.ipc.new_file(sink, _SCHEMA) as writer:
                writer.write_table(merged)
            atomic_write_bytes(self.path, sink.getvalue().to_pybytes())
        self._use(merged)


def _stat_all(files: Sequence[str], threads: int) -> list[FileId | None]:
    """``file_id`` of every file: serially on a local disk (a stat takes microseconds and threads
    only add overhead), on a thread pool when the first stats show network latency."""
    probe = [file_id(path) for path in files[:_PROBE]]
    start = time.perf_counter()
    probe_timed = [file_id(path) for path in files[_PROBE : 2 * _PROBE]]
    slow = probe_timed and (time.perf_counter() - start) / len(probe_timed) > _SLOW_STAT_S
    rest = files[len(probe) + len(probe_timed) :]
    return probe + probe_timed + (_parallel(file_id, rest, threads) if slow else [file_id(path) for path in rest])


def _parallel(fn: Callable[[Any], Any], items: Sequence[Any], threads: int, desc: str | None = None) -> list[Any]:
    """``[fn(item) for item in items]`` on a thread pool (stat and read wait on disks; sha256
    releases the GIL); a progress bar on rank 0 when ``desc`` is given."""
    if len(items) < 2 * threads:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = pool.map(fn, items, chunksize=16)
        if desc and is_main_process():
            from tqdm import tqdm

            results = tqdm(results, total=len(items), desc=desc)
        return list(results)


def image_keys(
    dataset: SampleTable, paths: Sequence[str], index: ImageHashIndex, threads: int = 16, progress: bool = False
) -> list[str]:
    """The content key of every row's image. ``paths`` is ``dataset``'s ``image_path`` column.

    Each distinct file is stat'ed once; only files the index does not know (or that changed) are
    read, every rank hashing its share; rank 0 records them. Rows whose image is in the table are
    hashed from the table's bytes.
    """
    root = dataset.image_root
    held = dataset.images_in_table()
    if held is not None and len(held) != len(paths):
        raise ValueError(f"{len(paths)} image paths for a table of {len(held)} rows")
    keys: list[str | None] = [None] * len(paths)
    file_rows: dict[str, list[int]] = {}
    base = os.path.abspath(root if root is not None else "")
    for row, path in enumerate(paths):
        if held is not None and held[row]:
            continue
        file_rows.setdefault(os.path.join(base, path), []).append(row)  # absolute: the root is part of it

    if held is not None:
        in_table = [row for row, flag in enumerate(held) if flag]
        for row, digest in zip(in_table, _parallel(lambda r: sha256_bytes(dataset.image_bytes(r)), in_table, threads)):
            keys[row] = digest

    files = list(file_rows)
    ids = dict(zip(files, _stat_all(files, threads)))
    digests: dict[str, str] = {}
    unknown = []
    for full in files:
        known = index.lookup(full, ids[full]) if ids[full] is not None else None
        if known is not None:
            digests[full] = known
        elif ids[full] is not None:
            unknown.append(full)
    if get_world_size() > 1:  # rank 0's view decides how the reading is shared out
        import torch.distributed as dist

        shared = [unknown]
        dist.broadcast_object_list(shared, src=0)
        unknown = shared[0]
    mine = unknown[get_rank() :: get_world_size()]

    def read(full: str) -> tuple[str, tuple[FileId, str] | None]:
        try:
            return full, (ids[full], sha256_file(full))
        except OSError:
            return full, None

    results = _parallel(read, mine, threads, "hashing images" if progress else None)
    new: dict[str, tuple[FileId, str]] = {}
    for part in all_gather_object(results):
        new.update({full: entry for full, entry in part if entry is not None and entry[0] is not None})
    if is_main_process():
        index.add(new)
    digests.update({full: entry[1] for full, entry in new.items()})
    for full, rows in file_rows.items():
        digest = digests.get(full) or missing_key(full)
        for row in rows:
            keys[row] = digest
    return keys  # type: ignore[return-value]
