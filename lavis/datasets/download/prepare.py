"""Fetch one data set into the layout its builder reads, verify it, and write ``MANIFEST.json``.

Steps: resolve the revision to a commit (the manifest's commit on a rerun), list the repo's
files there, fetch each selected file that is missing or whose content differs (resuming a
partial download), unpack image archives into the builder's image folder, then read the result
with the real builder and record what it found. One writer per root at a time.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lavis.common.errors import DownloadError, LavisError
from lavis.common.hashing import file_sha256
from lavis.common.output_lock import OutputLock
from lavis.common.path_rules import check_under_root
from lavis.datasets.download.archives import annotation_names, extract, extracted_complete
from lavis.datasets.download.catalog import HUB, Form, HubDataset
from lavis.datasets.download.hub import (
    HubSettings,
    RemoteFile,
    RepoListing,
    content_matches,
    fetch,
    list_repo,
)
from lavis.datasets.download.manifest import Manifest, read_manifest, write_manifest

logger = logging.getLogger(__name__)

PARTIAL_DIR = ".download"


def select_files(form: Form, listing: RepoListing, where: str) -> list[RemoteFile]:
    """The listed files the form needs (each required pattern must match), in listing order."""
    chosen: dict[str, RemoteFile] = {}
    for pattern in (*form.files, *form.optional):
        hits = [f for path, f in listing.files.items() if fnmatch.fnmatchcase(path, pattern)]
        if not hits and pattern in form.files:
            raise DownloadError(
                f"{where} has no file matching '{pattern}' at commit {listing.commit} (the release layout "
                f"changed?); files there: {sorted(listing.files)[:20]}"
            )
        chosen.update({f.path: f for f in hits})
    return list(chosen.values())


def _file_record(path: Path, remote: RemoteFile) -> dict[str, Any]:
    sha = remote.sha256 or file_sha256(path)  # LFS: already verified against the Hub's sha256
    return {"path": remote.path, "size": path.stat().st_size, "sha256": sha}


def _archives(ds: HubDataset, form: Form, root: Path, manifest: Manifest, old: Manifest | None,
              log: Callable[[str], None]) -> None:
    for archive in form.archives:
        record = manifest.file(archive.file)
        zip_path, into = root / archive.file, root / archive.into
        previous = old.archive(archive.file) if old else None
        if previous and previous["sha256"] == record["sha256"] and extracted_complete(zip_path, into, previous["strip"]):
            manifest.archives.append(previous)
            log(f"ok        {archive.file} -> {archive.into}/ ({previous['files']} files)")
            continue
        wanted: set[str] = set()
        if archive.names_from and (root / archive.names_from[0]).exists():
            wanted = annotation_names(root / archive.names_from[0], archive.names_from[1])
        done = extract(zip_path, into, wanted)
        log(f"extracted {archive.file} -> {archive.into}/ ({done.written} of {done.files} files written"
            f"{f', stripped {done.strip!r}' if done.strip else ''})")
        manifest.archives.append({"file": archive.file, "sha256": record["sha256"], "into": archive.into,
                                  "strip": done.strip, "files": done.files, "bytes": done.bytes})


def layout_summary(name: str, root: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Read the folder with the data set's real builder: rows per split and images it would miss."""
    from lavis.datasets.builders.standalone import make_builder
    from lavis.datasets.datasets.sample_table import IMAGE_BYTES

    builder = make_builder(name, root, options)
    summary: dict[str, Any] = {}
    for split, data in builder.load_splits().items():
        entry: dict[str, Any] = {"rows": data.table.num_rows}
        if IMAGE_BYTES in data.table.column_names or data.image_root is None:
            entry["images"] = "in the table"
        else:
            paths = set(data.table.column("image_path").to_pylist())
            entry["image_folder"] = str(data.image_root.relative_to(root)) if data.image_root.is_relative_to(root) \
                else str(data.image_root)
            entry["images"] = len(paths)
            entry["images_missing"] = sum(not (data.image_root / p).is_file() for p in paths)
        summary[split] = entry
    return summary


def _verify_offline(ds: HubDataset, root: Path, old: Manifest | None, form: Form) -> Manifest:
    if old is None:
        raise DownloadError(
            f"offline mode (HF_HUB_OFFLINE) and {root} holds no {ds.name} download yet: "
            "unset HF_HUB_OFFLINE on a machine with network access to fetch it"
        )
    bad = [f["path"] for f in old.files
           if not (root / f["path"]).is_file() or (root / f["path"]).stat().st_size != f["size"]
           or file_sha256(root / f["path"]) != f["sha256"]]
    bad += [f"{a['into']}/ (from {a['file']})" for a in old.archives
            if not extracted_complete(root / a["file"], root / a["into"], a["strip"])]
    if bad:
        raise DownloadError(
            f"offline mode (HF_HUB_OFFLINE): {len(bad)} part(s) of {ds.name} in {root} are missing or differ "
            f"from MANIFEST.json: {bad[:10]}; unset HF_HUB_OFFLINE to fetch them again"
        )
    return old


@dataclasses.dataclass
class Request:
    name: str
    root: Path
    form: str | None = None
    revision: str | None = None  # branch, tag or commit; default: the manifest's commit, else the catalog's
    update: bool = False  # move to the newest commit of the default branch
    token: str | None = None
    timeout: float = 60.0  # seconds to wait for the Hub to answer a request


def download_dataset(request: Request, log: Callable[[str], None] = print) -> Manifest:
    """Fetch, verify and lay out one catalogued data set; returns the manifest written."""
    ds = HUB[request.name]
    root = request.root.expanduser()
    settings = HubSettings.from_env(request.token, request.timeout)
    with OutputLock(root, f"lavis.datasets.download {ds.name}"):
        old = read_manifest(root)
        if old is not None and (old.name, old.repo_id) != (ds.name, ds.repo_id):
            raise LavisError(f"{root} holds a download of {old.name} ({old.repo_id}): use another --root")
        form_name = request.form or (old.form if old else None) or ds.default_form
        if form_name not in ds.forms:
            raise LavisError(f"{ds.name} has no form '{form_name}'; known: {', '.join(ds.forms)}")
        form = ds.forms[form_name]
        if settings.offline:
            manifest = _verify_offline(ds, root, old if old and old.form == form_name else None, form)
            log(f"offline: {len(manifest.files)} file(s) of {ds.name} verified against {root / 'MANIFEST.json'}")
            return manifest
        if request.revision or request.update:
            requested = request.revision or "main"  # asked for, or the newest of the default branch
        else:  # the commit this folder holds, else the catalogue's pin
            requested = old.revision if old else ds.revision or "main"
        log(f"{ds.name}: {ds.repo_id} at {requested} from {settings.endpoint}")
        listing = list_repo(ds.repo_id, requested, settings, ds.repo_type)
        # a listed name with '..' (or absolute) would be written outside the root: the whole listing is refused
        check_under_root(list(listing.files), root, "rfilename",
                         lambda i: f"the file list of {ds.repo_id}@{listing.commit} from {settings.endpoint}",
                         kind="file path")
        manifest = Manifest(ds.name, form_name, ds.repo_id, listing.commit, request.revision or ds.revision or "main",
                            settings.endpoint)
        for remote in select_files(form, listing, f"{ds.repo_id}@{requested}"):
            dest = root / remote.path
            if content_matches(dest, remote):
                log(f"ok        {remote.path}")
            else:
                state = "re-fetch " if dest.exists() else "fetch    "
                log(f"{state} {remote.path} ({remote.size or '?'} bytes)")
                fetch(ds.repo_id, listing.commit, remote, dest, root / PARTIAL_DIR, settings, ds.repo_type)
            manifest.files.append(_file_record(dest, remote))
        _archives(ds, form, root, manifest, old, log)
        try:
            manifest.layout = layout_summary(ds.name, root, dict(form.builder_options))
        finally:
            write_manifest(root, manifest)  # the files are verified even if the builder disagrees
        return manifest
