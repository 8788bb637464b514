"""Content digests of files, computed by streaming (a 20 GB archive is never held in memory).

``sha256`` is what manifests record and what the Hugging Face Hub reports for LFS files;
``git_blob_sha1`` is the Hub's id for files kept in git itself (small text files), so a
downloaded file can be checked against either without trusting its size alone.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

CHUNK = 4 << 20


def _stream(path: str | os.PathLike, digest: hashlib._Hash, progress: Callable[[int], None] | None) -> str:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike, progress: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of a file's bytes; ``progress(n)`` is called per chunk read."""
    return _stream(path, hashlib.sha256(), progress)


def git_blob_sha1(path: str | os.PathLike) -> str:
    """The git object id of a file's content (``sha1("blob <size>\\0" + content)``)."""
    digest = hashlib.sha1(f"blob {Path(path).stat().st_size}\0".encode())
    return _stream(path, digest, None)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
