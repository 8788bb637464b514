"""Where a weight source is, without fetching or reading it: a local file or folder, the Hugging
Face cache, the URL cache, or only remote (and then, when online, how big the download is).

Used by ``lavis.apps.doctor`` (pre-flight) and by checkpoint provenance (which file a run used).
``lavis.models.vision.weights`` is the loader that actually fetches; this module never does.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from lavis.models.vision.weights import (
    INDEX_SUFFIX,
    WEIGHT_SUFFIXES,
    hub_repo_id,
    offline_mode,
    url_cache_dir,
)

LOCAL, HUB_CACHE, URL_CACHE, REMOTE, MISSING = "local", "hub cache", "url cache", "remote", "missing"
# Hub names without an organisation (bert-base-uncased, gpt2): still resolved by the Hub
_LEGACY_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")
_SNAPSHOT_PARENT = "snapshots"


@dataclasses.dataclass
class Located:
    """``kind`` is one of LOCAL, HUB_CACHE, URL_CACHE (on disk), REMOTE (fetchable), MISSING."""

    source: str
    kind: str
    files: list[Path] = dataclasses.field(default_factory=list)  # on-disk files (weights, or what was asked)
    detail: str = ""
    revision: str | None = None  # a hub commit, when the files sit in a hub snapshot
    remote_bytes: int | None = None  # REMOTE and online: the download size

    @property
    def on_disk(self) -> bool:
        return self.kind in (LOCAL, HUB_CACHE, URL_CACHE)

    @property
    def bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files if f.is_file())


def snapshot_revision(path: Path) -> str | None:
    """The commit of a hub-cache snapshot path (``.../snapshots/<commit>/...``), or of a folder
    downloaded with ``--local-dir`` (its ``.cache/huggingface/download/*.metadata`` files)."""
    parts = path.resolve().parts if path.exists() else path.parts
    for index, part in enumerate(parts[:-1]):
        if part == _SNAPSHOT_PARENT and len(parts[index + 1]) == 40:
            return parts[index + 1]
    folder = path if path.is_dir() else path.parent
    for metadata in sorted((folder / ".cache" / "huggingface" / "download").glob("*.metadata")):
        first = metadata.read_text(errors="replace").splitlines()[:1]
        if first and len(first[0].strip()) == 40:
            return first[0].strip()
    return None


def _sharded(index_file: Path) -> list[Path]:
    """The shard files a ``*.index.json`` names (those present), plus the index itself."""
    try:
        shards = sorted(set(json.loads(index_file.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError):
        return [index_file]
    return [index_file, *(index_file.parent / s for s in shards)]


def _in_folder(folder: Path, filenames: Sequence[str]) -> list[Path] | None:
    for name in filenames:
        if (folder / name).is_file():
            path = folder / name
            return _sharded(path) if name.endswith(INDEX_SUFFIX) else [path]
    candidates = [p for p in sorted(folder.iterdir()) if p.name.endswith(WEIGHT_SUFFIXES)]
    return candidates if len(candidates) == 1 else None


def _hub_cached(repo: str, filenames: Sequence[str], repo_type: str) -> list[Path] | None:
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        found = try_to_load_from_cache(repo, name, repo_type=repo_type)
        if isinstance(found, str):
            path = Path(found)
            if not name.endswith(INDEX_SUFFIX):
                return [path]
            shards = _sharded(path)
            cached = [try_to_load_from_cache(repo, s.name, repo_type=repo_type) for s in shards[1:]]
            if all(isinstance(c, str) for c in cached):
                return [path, *(Path(c) for c in cached)]
    return None


def remote_size(repo: str | None, url: str | None, filenames: Sequence[str]) -> int | None:
    """Bytes a download would take (None when unknown or offline); asks the Hub / URL server."""
    if offline_mode():
        return None
    try:
        if repo is not None:
            from huggingface_hub import HfApi

            info = HfApi().model_info(repo, files_metadata=True)
            sizes = {s.rfilename: (s.lfs.size if s.lfs else s.size) or 0 for s in info.siblings or []}
            for name in filenames:
                if name in sizes:
                    if name.endswith(INDEX_SUFFIX):  # every shard beside the index
                        return sum(v for k, v in sizes.items() if k.endswith((".safetensors", ".bin")))
                    return sizes[name]
            return None
        from huggingface_hub.utils import get_session

        response = get_session().head(url, follow_redirects=True, timeout=10)
        length = response.headers.get("Content-Length")
        return int(length) if response.status_code < 400 and length else None
    except Exception:  # any network trouble: the size is just unknown
        return None


def locate(source: str, filenames: Sequence[str], repo_type: str = "model", ask_size: bool = True) -> Located:
    """Where ``source`` (file, folder, hub id or URL) is; never downloads."""
    path = Path(source).expanduser()
    if path.is_file():
        return Located(source, LOCAL, [path], revision=snapshot_revision(path))
    if path.is_dir():
        files = _in_folder(path, filenames)
        if files is None:
            found = ", ".join(p.name for p in sorted(path.iterdir())[:10]) or "nothing"
            return Located(source, MISSING, detail=f"folder has none of {list(filenames)} (found: {found})")
        return Located(source, LOCAL, files, revision=snapshot_revision(files[0]))
    if source.startswith(("http://", "https://")):
        cached = url_cache_dir() / Path(urlparse(source).path).name
        if cached.is_file():
            return Located(source, URL_CACHE, [cached])
        size = remote_size(None, source, filenames) if ask_size else None
        return Located(source, REMOTE, detail=f"not in {url_cache_dir()}", remote_bytes=size)
    repo = hub_repo_id(source) or (source if _LEGACY_HUB_NAME.match(source) else None)
    if repo is not None:
        files = _hub_cached(repo, filenames, repo_type)
        if files is not None:
            return Located(source, HUB_CACHE, files, revision=snapshot_revision(files[0]))
        size = remote_size(repo, None, filenames) if ask_size else None
        return Located(source, REMOTE, detail="not in the Hugging Face cache", remote_bytes=size)
    return Located(source, MISSING, detail="no such file or folder, and not a hub id or URL")
