"""Feature-cache image keys: the sha256 of the image's bytes, remembered per file identity."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow as pa
import pytest

from lavis.datasets import image_hashes
from lavis.datasets.datasets.sample_table import SampleTable
from lavis.datasets.image_hashes import ImageHashIndex, image_keys, missing_key


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _table(root: Path | None, paths: list[str], image_bytes: list | None = None) -> SampleTable:
    columns = {"image_path": paths, "text_input": ["t"] * len(paths)}
    if image_bytes is not None:
        columns["image_bytes"] = image_bytes
    return SampleTable(pa.table(columns), root)


def _keys(table: SampleTable, cache: Path) -> list[str]:
    return image_keys(table, table.column("image_path"), ImageHashIndex(cache))


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Paths whose bytes were read to hash them."""
    calls: list[str] = []
    real = image_hashes.sha256_file

    def counted(path):
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(image_hashes, "sha256_file", counted)
    return calls


def test_keys_are_content_hashes_and_each_file_is_read_once(tmp_path, write, reads):
    a, b = write.image_file(tmp_path / "a.png"), write.image_file(tmp_path / "b.png", index=1)
    paths = ["a.png", "b.png", "a.png", "missing.png", "a.png"]
    keys = _keys(_table(tmp_path, paths), tmp_path / "cache")
    assert keys[0] == keys[2] == keys[4] == _sha(a.read_bytes()) and keys[1] == _sha(b.read_bytes())
    assert keys[3] == missing_key(str(tmp_path / "missing.png"))
    assert sorted(reads) == [str(a), str(b)]
    # a second run stats the files and reads nothing: the index remembers them
    reads.clear()
    assert _keys(_table(tmp_path, paths), tmp_path / "cache") == keys and reads == []


def test_same_size_and_mtime_but_new_pixels_is_rehashed(tmp_path, write, reads):
    """An in-place rewrite that keeps size and mtime (the old key's blind spot) changes ctime."""
    path = tmp_path / "tile.bmp"
    write.image_file(path, index=0)
    first = _keys(_table(tmp_path, ["tile.bmp"]), tmp_path / "cache")[0]
    before = os.stat(path)
    replacement = tmp_path / "other.bmp"
    write.image_file(replacement, index=1)
    assert replacement.stat().st_size == before.st_size  # uncompressed: same size
    with open(path, "r+b") as handle:  # same inode, same size
        handle.write(replacement.read_bytes())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    reads.clear()
    second = _keys(_table(tmp_path, ["tile.bmp"]), tmp_path / "cache")[0]
    assert reads == [str(path)] and second == _sha(replacement.read_bytes()) != first


def test_a_file_replaced_by_rename_with_the_same_mtime_is_rehashed(tmp_path, write, reads):
    """``rsync -a`` writes a temporary file, copies the mtime and renames it over the old one."""
    path = tmp_path / "tile.bmp"
    write.image_file(path, index=0)
    first = _keys(_table(tmp_path, ["tile.bmp"]), tmp_path / "cache")[0]
    before = os.stat(path)
    incoming = tmp_path / ".tile.bmp.rsync"
    write.image_file(incoming, index=1)
    os.utime(incoming, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(incoming, path)
    reads.clear()
    second = _keys(_table(tmp_path, ["tile.bmp"]), tmp_path / "cache")[0]
    assert reads == [str(path)] and second != first


def test_the_same_relative_path_under_two_roots_does_not_collide(tmp_path, write):
    write.image_file(tmp_path / "site_a" / "slide1" / "tile.png", index=0)
    write.image_file(tmp_path / "site_b" / "slide1" / "tile.png", index=1)
    cache = tmp_path / "cache"
    key_a = _keys(_table(tmp_path / "site_a", ["slide1/tile.png"]), cache)[0]
    key_b = _keys(_table(tmp_path / "site_b", ["slide1/tile.png"]), cache)[0]
    assert key_a != key_b
    index = ImageHashIndex(cache)  # both files remembered, by absolute path
    assert set(index.paths()) == {str(tmp_path / f"site_{s}" / "slide1" / "tile.png") for s in "ab"}
    # identical bytes under another name share a key (the same features are valid for both)
    (tmp_path / "copy.png").write_bytes((tmp_path / "site_a" / "slide1" / "tile.png").read_bytes())
    assert _keys(_table(tmp_path, ["copy.png"]), cache)[0] == key_a


def test_table_held_images_are_keyed_by_their_bytes_without_touching_files(tmp_path, write, reads, monkeypatch):
    held = "tile.jpg#0123456789abcdef"
    (tmp_path / held).write_bytes(b"a same-named file in the working directory")
    write.image_file(tmp_path / "disk.jpg")
    monkeypatch.chdir(tmp_path)
    first, second = write.image_bytes(), write.image_bytes(fmt="PNG")
    table = _table(None, [held, "disk.jpg", held, "other#1"], [first, None, second, first])
    keys = _keys(table, tmp_path / "cache")
    assert reads == [str(tmp_path / "disk.jpg")]  # the null-bytes row reads its file; held ones do not
    assert keys[0] == keys[3] == _sha(first)  # same bytes, same key, whatever the path
    assert keys[2] == _sha(second) != keys[0]  # same path, other bytes
    assert keys[1] == _sha((tmp_path / "disk.jpg").read_bytes())


def test_a_corrupt_index_is_a_clear_error(tmp_path):
    (tmp_path / "image_hashes.arrow").write_bytes(b"not arrow")
    with pytest.raises(Exception, match="image_hashes.arrow: unreadable image-hash index.*delete it"):
        ImageHashIndex(tmp_path)


def test_a_table_without_image_bytes_holds_no_images(tmp_path):
    table = _table(tmp_path, ["a.png"])
    assert table.images_in_table() is None and table.image_bytes(0) is None
