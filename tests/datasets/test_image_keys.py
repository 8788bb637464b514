"""Feature-cache image keys: one stat per distinct file, none for images held in the table."""

from __future__ import annotations

import hashlib
import os

import pyarrow as pa

from lavis.datasets import feature_store
from lavis.datasets.datasets.sample_table import SampleTable
from lavis.datasets.feature_store import image_keys


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _count_stats(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = os.stat

    def counted(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(feature_store.os, "stat", counted)
    return calls


def test_file_keys_stat_each_distinct_image_once(tmp_path, write, monkeypatch):
    write.image_file(tmp_path / "a.png")
    write.image_file(tmp_path / "b.png")
    paths = ["a.png", "b.png", "a.png", "missing.png", "a.png", "missing.png"]
    table = SampleTable(pa.table({"image_path": paths, "text_input": ["t"] * len(paths)}), tmp_path)
    calls = _count_stats(monkeypatch)
    keys = image_keys(table, table.column("image_path"))
    assert sorted(calls) == sorted(str(tmp_path / p) for p in ("a.png", "b.png", "missing.png"))
    stat = os.stat(tmp_path / "a.png")
    assert keys[0] == keys[2] == keys[4] == _sha(f"a.png\0{stat.st_size}\0{stat.st_mtime_ns}")
    assert keys[1] != keys[0]
    assert keys[3] == keys[5] == _sha("missing.png")  # a missing file is keyed on its path


def test_table_held_images_are_keyed_on_the_path_without_a_stat(tmp_path, write, monkeypatch):
    held = "tile.jpg#0123456789abcdef"
    (tmp_path / held).write_bytes(b"a same-named file in the working directory")
    write.image_file(tmp_path / "disk.jpg")
    monkeypatch.chdir(tmp_path)
    data = write.image_bytes()
    paths = [held, "disk.jpg", held]
    table = SampleTable(
        pa.table({"image_path": paths, "image_bytes": [data, None, data], "text_input": ["t"] * 3}), None
    )
    assert table.images_in_table() == [True, False, True]
    calls = _count_stats(monkeypatch)
    keys = image_keys(table, table.column("image_path"))
    assert calls == ["disk.jpg"]  # the null-bytes row reads its file; the held ones are not stat'ed
    assert keys[0] == keys[2] == _sha(held)
    stat = os.stat(tmp_path / "disk.jpg")
    assert keys[1] == _sha(f"disk.jpg\0{stat.st_size}\0{stat.st_mtime_ns}")


def test_a_table_without_image_bytes_holds_no_images(tmp_path):
    table = SampleTable(pa.table({"image_path": ["a.png"], "text_input": ["t"]}), tmp_path)
    assert table.images_in_table() is None
