"""Where pretrained encoder weights come from: a local file or folder, a Hub id, or a URL.

Nothing here downloads while ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` / ``LAVIS_OFFLINE`` is
set (the test suite sets the first): a source that is neither on disk nor in the local cache fails
with :class:`WeightsNotFoundError` saying what to download and where to put it. URLs are cached
under ``$LAVIS_CACHE_DIR`` (default ``~/.cache/lavis/checkpoints``), as BLIP-2 checkpoints are.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from lavis.common.errors import CheckpointError, WeightsNotFoundError

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")
INDEX_SUFFIX = ".index.json"
_HUB_ID = re.compile(r"^(hf-hub:)?[A-Za-z0-9][\w.-]*/[\w.-]+$")


def offline_mode() -> bool:
    flags = (os.environ.get(name, "") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "LAVIS_OFFLINE"))
    return any(flag.strip().lower() in {"1", "true", "yes", "on"} for flag in flags)


def url_cache_dir() -> Path:
    return Path(os.environ.get("LAVIS_CACHE_DIR", Path.home() / ".cache" / "lavis" / "checkpoints"))


def hub_repo_id(source: str) -> str | None:
    """``org/name`` or ``hf-hub:org/name`` -> ``org/name``; None for anything that reads as a path."""
    if source.startswith(("/", ".", "~")) or source.lower().endswith(WEIGHT_SUFFIXES + (".json",)):
        return None
    return source.removeprefix("hf-hub:") if _HUB_ID.match(source) else None


def fetch_file(source: str, filenames: Sequence[str], what: str, hint: str) -> Path:
    """A local path to ``source`` itself (a file), or to the first of ``filenames`` inside it.

    ``source`` is a file, a folder, a Hub repo id (``org/name`` or ``hf-hub:org/name``; the
    Hub cache is used, and only it when offline) or an http(s) URL (cached in
    :func:`url_cache_dir`). ``what`` names the weights and ``hint`` says where to get them.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        return _first_in_folder(path, filenames, what, hint)
    if source.startswith(("http://", "https://")):
        return _from_url(source, what, hint)
    repo = hub_repo_id(source)
    if repo is not None:
        return _from_hub(repo, filenames, what, hint)
    raise WeightsNotFoundError(f"{what}: no file or folder at '{source}'. {hint}")


def _first_in_folder(folder: Path, filenames: Sequence[str], what: str, hint: str) -> Path:
    for name in filenames:
        if (folder / name).is_file():
            return folder / name
    candidates = [p for p in sorted(folder.iterdir()) if p.name.endswith(WEIGHT_SUFFIXES)]
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(p.name for p in candidates) or "no weight files"
    raise WeightsNotFoundError(
        f"{what}: folder '{folder}' has none of {list(filenames)} (found: {found}). {hint}"
    )


def _from_hub(repo: str, filenames: Sequence[str], what: str, hint: str) -> Path:
    from huggingface_hub import hf_hub_download

    failures = []
    for name in filenames:
        try:
            return Path(hf_hub_download(repo, name))
        except Exception as err:  # missing file, offline, no network, gated repo: try the next name
            failures.append(f"{name}: {type(err).__name__}")
    where = "the local Hub cache (offline mode)" if offline_mode() else "the Hub"
    raise WeightsNotFoundError(
        f"{what}: '{repo}' is no local path, and none of {list(filenames)} was found for it in {where} "
        f"({'; '.join(failures)}). "
        f"Download it with `hf download {repo} --local-dir <folder>` and set the path to that "
        f"folder. {hint}"
    )


def _from_url(url: str, what: str, hint: str) -> Path:
    cached = url_cache_dir() / Path(urlparse(url).path).name
    if cached.is_file():
        return cached
    if offline_mode():
        raise WeightsNotFoundError(
            f"{what}: '{url}' is not in the local cache and downloads are off (offline mode). "
            f"Download it to {cached} (e.g. `wget -O {cached} {url}`) or set the path to a local copy. {hint}"
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(cached), progress=True)
    except Exception as err:
        raise WeightsNotFoundError(
            f"{what}: could not download '{url}' ({err}). Download it to {cached} by hand. {hint}"
        ) from err
    return cached


# ---- reading ------------------------------------------------------------------------------
def load_weights(
    source: str, filenames: Sequence[str], what: str, hint: str, keep: Callable[[str], bool] | None = None
) -> tuple[dict[str, torch.Tensor], str]:
    """Fetch and read a state dict (one file, or the shards a ``*.index.json`` names).

    ``keep`` filters keys before reading, so only the shards holding kept keys are fetched.
    Returns the tensors and the resolved path (for messages).
    """
    files, path = weight_files(source, filenames, what, hint, keep)
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(read_state_dict(file, keep))
    return state, path


def weight_files(
    source: str, filenames: Sequence[str], what: str, hint: str, keep: Callable[[str], bool] | None = None
) -> tuple[list[Path], str]:
    """The local files holding ``source``'s weights and the resolved path (for messages).

    One file, or the shards a ``*.index.json`` names (only those holding kept keys, fetched
    now). Callers that stream tensors one at a time (full-size conversions) read these themselves.
    """
    path = fetch_file(source, filenames, what, hint)
    if not path.name.endswith(INDEX_SUFFIX):
        return [path], str(path)
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"'{path}' is not a sharded-weights index with a 'weight_map': {err}") from err
    shard_source = str(path.parent) if Path(source).expanduser().exists() else source
    shards = sorted({file for key, file in weight_map.items() if keep is None or keep(key)})
    return [fetch_file(shard_source, [shard], what, hint) for shard in shards], str(path)


def read_state_dict(path: Path, keep: Callable[[str], bool] | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``torch.save``d state dict (weights_only)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                return {k: handle.get_tensor(k) for k in handle.keys() if keep is None or keep(k)}
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read '{path}' as a weights file: {why_unreadable(path, err)}") from err
    state = _unwrap(loaded, path)
    return {k: v for k, v in state.items() if keep is None or keep(k)}


def why_unreadable(path: Path, err: Exception) -> str:
    """One sentence on why ``torch.load`` refused ``path`` (torch's own message is an essay)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head:
        return "the file is empty"
    if path.suffix == ".safetensors":
        return f"not a valid safetensors file ({str(err).splitlines()[0][:200]})"
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save's zip, or a legacy pickle
        return "it is neither a safetensors file nor a torch.save'd state dict (.pth / .bin)"
    text = str(err)
    if "WeightsUnpickler error:" in text or "Weights only load failed" in text:
        # torch words the refused object "WeightsUnpickler error: ..." or (newer) "Trying to load ..."
        lines = [line.strip() for line in text.splitlines()]
        found = next((line for line in lines if "WeightsUnpickler error:" in line or line.startswith("Trying to")), "")
        detail = found.split("WeightsUnpickler error:")[-1].strip().split(". ")[0].strip().rstrip(".") or "not tensors"
        return (
            f"it holds Python objects besides tensors ({detail[:200]}), which weights-only loading refuses; "
            "if you trust the file, re-save its state dict alone. TorchScript archives (OpenAI's CLIP .pt): "
            "save torch.jit.load(f).state_dict()"
        )
    return f"{type(err).__name__}: {(text.splitlines() or [''])[0][:200]}"


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """Find the tensors in common checkpoint containers (``model``/``state_dict``, DDP ``module.``)."""
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"'{path}' does not hold a state dict (got {type(loaded).__name__})")
    for key in ("model", "state_dict", "module"):
        inner = loaded.get(key)
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            loaded = inner
            break
    tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"'{path}' holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


# ---- mapping and loading ------------------------------------------------------------------
def select_prefix(state: Mapping[str, torch.Tensor], prefixes: Sequence[str]) -> dict[str, torch.Tensor]:
    """Keys under the first of ``prefixes`` that occurs, with it removed; else ``state`` as is.

    A full-model checkpoint (``visual_encoder.*`` in LAVIS, ``visual.*`` in open_clip,
    ``vision_model.*`` in Hugging Face) thus yields just the vision tower.
    """
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def _short(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``module``: every weight must be there with its shape; extras are logged."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(
            f"{source}: {len(missing)} weights of {type(module).__name__} are missing: {_short(missing)}"
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source}: '{key}' has shape {tuple(state[key].shape)}, the encoder expects "
                f"{tuple(tensor.shape)} (do the config's architecture numbers match the weights?)"
            )
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        logger.warning("%s: ignoring %d weights the encoder does not use: %s", source, len(unexpected), _short(unexpected))
    module.load_state_dict({k: state[k] for k in expected}, strict=True)
