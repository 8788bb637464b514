"""Files of a Hub dataset repo: list them at a commit, fetch one resumably, verify it by content.

Everything goes through ``huggingface_hub`` (its endpoint, token and offline settings, its
metadata call and its streaming ``http_get``), but the partial file is ours: it lives under
``<root>/.download/`` named by the file's content id and is appended to with an HTTP Range
request, so a download killed mid-file (Ctrl-C, a preempted job, a lost connection) continues
where it stopped on the next run. A finished file is checked against the Hub's own content id
(sha256 for LFS files, the git blob sha1 otherwise) before it is moved into place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from urllib.parse import urlparse

from lavis.common.errors import DownloadError
from lavis.common.hashing import file_sha256, git_blob_sha1

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class HubSettings:
    """Read from the environment at call time (not at import), so one process can change them."""

    endpoint: str
    token: str | None  # explicit token; None lets huggingface_hub use HF_TOKEN or the stored login
    offline: bool
    timeout: float = 60.0  # seconds to wait for an answer to a metadata request

    @classmethod
    def from_env(cls, token: str | None = None, timeout: float = 60.0) -> HubSettings:
        from huggingface_hub import constants

        flags = (os.environ.get(name, "") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
        env_offline = any(flag.strip().lower() in _TRUE for flag in flags)
        endpoint = os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
        # huggingface_hub fixes its own offline flag at import; honour it too (it refuses requests).
        return cls(endpoint.rstrip("/"), token, env_offline or bool(constants.HF_HUB_OFFLINE), timeout)


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    sha256: str | None  # LFS files: the Hub's sha256 of the content
    git_sha1: str | None  # files stored in git: the blob id

    def expected(self) -> str:
        return f"sha256 {self.sha256}" if self.sha256 else f"git blob {self.git_sha1}"


@dataclasses.dataclass(frozen=True)
class RepoListing:
    commit: str
    files: dict[str, RemoteFile]


def _access_hint(repo_id: str, settings: HubSettings, gated: bool) -> str:
    page = f"{settings.endpoint}/datasets/{repo_id}"
    token = "a token was given" if settings.token else "no --token was given"
    if gated:
        return (
            f"{repo_id} is gated: open {page} while logged in and accept its terms, then log in here "
            f"(`hf auth login`) or set HF_TOKEN / pass --token with a read token of that account ({token})"
        )
    return f"check the repository id and your access to {page} ({token}; HF_TOKEN or `hf auth login` for private repos)"


def _hub_error(err: Exception, repo_id: str, settings: HubSettings, what: str) -> DownloadError:
    """One clear line for the ways the Hub refuses a request (or never answers it)."""
    import httpx2
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(err, httpx2.TimeoutException):
        return DownloadError(f"cannot fetch {what}: {settings.endpoint} did not answer within {settings.timeout:g} s "
                             "(is HF_ENDPOINT right and the network up? --timeout sets the wait)")
    if isinstance(err, GatedRepoError):
        return DownloadError(f"cannot fetch {what}: {_access_hint(repo_id, settings, gated=True)}")
    if isinstance(err, RevisionNotFoundError):
        return DownloadError(f"cannot fetch {what}: {repo_id} has no such revision ({err.server_message or err})")
    if isinstance(err, EntryNotFoundError):
        return DownloadError(f"cannot fetch {what}: no such file in {repo_id} (the release layout changed?)")
    if isinstance(err, RepositoryNotFoundError):
        return DownloadError(f"cannot fetch {what}: {_access_hint(repo_id, settings, gated=False)}")
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else "?"
        if status in (401, 403):
            return DownloadError(f"cannot fetch {what}: HTTP {status}; {_access_hint(repo_id, settings, gated=True)}")
        return DownloadError(f"cannot fetch {what}: HTTP {status} from {settings.endpoint} ({err})")
    return DownloadError(f"cannot fetch {what} from {settings.endpoint}: {type(err).__name__}: {err}")


def list_repo(repo_id: str, revision: str, settings: HubSettings, repo_type: str = "dataset") -> RepoListing:
    """The commit ``revision`` resolves to and every file there with its size and content id."""
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HfHubHTTPError

    api = HfApi(endpoint=settings.endpoint, token=settings.token)
    try:
        info = api.repo_info(repo_id, repo_type=repo_type, revision=revision, files_metadata=True,
                             timeout=settings.timeout)  # the client's default is to wait forever
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as err:
        raise _hub_error(err, repo_id, settings, f"the file list of {repo_id}@{revision}") from None
    if not info.sha:
        raise DownloadError(f"{settings.endpoint} returned no commit id for {repo_id}@{revision}")
    files = {}
    for sibling in info.siblings or []:
        lfs = sibling.lfs
        files[sibling.rfilename] = RemoteFile(
            sibling.rfilename,
            lfs.size if lfs else sibling.size,
            lfs.sha256 if lfs else None,
            None if lfs else sibling.blob_id,
        )
    return RepoListing(info.sha, files)


def content_matches(path: Path, remote: RemoteFile) -> bool:
    """Whether ``path`` holds exactly the remote file (size, then the content id)."""
    if not path.is_file() or (remote.size is not None and path.stat().st_size != remote.size):
        return False
    if remote.sha256:
        return file_sha256(path) == remote.sha256
    if remote.git_sha1:
        return git_blob_sha1(path) == remote.git_sha1
    return True  # the Hub gave no content id: the size is all there is to compare


def partial_path(partial_dir: Path, remote: RemoteFile) -> Path:
    """Where an unfinished download of ``remote`` accumulates; named by content, so a changed
    file upstream never resumes onto the bytes of the old one."""
    tag = (remote.sha256 or remote.git_sha1 or "nohash")[:16]
    return partial_dir / f"{remote.path}.{tag}.part"


def fetch(repo_id: str, commit: str, remote: RemoteFile, dest: Path, partial_dir: Path, settings: HubSettings,
          repo_type: str = "dataset") -> None:
    """Download ``remote`` at ``commit`` to ``dest``, continuing a partial file if one is there."""
    import httpx2
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import HfHubHTTPError, build_hf_headers

    what = f"{repo_id}/{remote.path}"
    url = hf_hub_url(repo_id, remote.path, repo_type=repo_type, revision=commit, endpoint=settings.endpoint)
    headers = build_hf_headers(token=settings.token)
    part = partial_path(partial_dir, remote)
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        meta = get_hf_file_metadata(url, token=settings.token, endpoint=settings.endpoint, timeout=settings.timeout)
        size = meta.size if meta.size is not None else remote.size
        location = meta.location or url
        if urlparse(location).netloc != urlparse(url).netloc:
            headers.pop("authorization", None)  # a signed CDN link: never send the Hub token there
        done = part.stat().st_size if part.exists() else 0
        if size is not None and done > size:
            part.unlink()  # longer than the file: not ours to continue
            done = 0
        if done:
            logger.info("%s: resuming at byte %d of %s", remote.path, done, size)
        with open(part, "ab") as handle:
            http_get(location, handle, resume_size=done, headers=headers, expected_size=size,
                     displayed_filename=remote.path)
    except (HfHubHTTPError, httpx2.HTTPError) as err:
        raise _hub_error(err, repo_id, settings, what) from None
    except OSError as err:  # e.g. the connection ended early more often than http_get retries
        raise DownloadError(f"{what}: {err}; the partial file is kept, run the command again to resume") from None
    if not content_matches(part, remote):
        got = part.stat().st_size
        part.unlink()
        raise DownloadError(
            f"{what}: the downloaded file ({got} bytes) does not match the Hub's {remote.expected()}; "
            "the partial file was discarded, run the command again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, dest)
