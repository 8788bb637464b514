"""Models out to (and back from) the Hugging Face Hub, through ``huggingface_hub``.

``push_to_hub`` uploads a folder written by ``to_hf`` or ``save_model_folder`` with a model card
(``README.md``): what the model is, its conversation contract, the evaluation figures of the run
it came from (its ``*_metrics.json`` files) and that run's training config. ``hub_folder``
brings a hub repo back as a local folder, whichever of the two layouts it holds, so
``lavis.models.load_pretrained("user/repo")`` loads both. The endpoint, token and offline mode
are huggingface_hub's own (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lavis.common.checkpoint import atomic_write_text
from lavis.common.conversation import ConversationContract, contract_of_record
from lavis.common.errors import WeightsNotFoundError

CARD_NAME = "README.md"
OUR_CONFIG = "config.yaml"  # lavis.models.interop.folder.CONFIG_NAME: our layout
_LAYOUT_FILES = ["config.json", OUR_CONFIG]
HF_CONFIG_KEY = "clover_conversation"  # the contract in an exported config.json


def conversation_of(model: Any, record: Mapping[str, Any] | None = None) -> ConversationContract:
    """The model's conversation contract: a checkpoint's provenance record, else the model config's
    ``conversation``, else single-turn (every LAVIS / CLOVER release)."""
    if record:
        return contract_of_record(record)
    section = getattr(model.cfg, "conversation", None)
    return ConversationContract.from_dict(dataclasses.asdict(section) if dataclasses.is_dataclass(section) else section)


def _figures(metrics: Any, prefix: str = "") -> list[tuple[str, float]]:
    """(dotted key, number) of every numeric leaf of a metrics file."""
    if isinstance(metrics, Mapping):
        return [row for key, value in metrics.items() for row in _figures(value, f"{prefix}{key}.")]
    if isinstance(metrics, (int, float)) and not isinstance(metrics, bool):
        return [(prefix.rstrip("."), float(metrics))]
    return []


def model_card(model: Any, repo_id: str, contract: ConversationContract, run_dir: Path | None = None) -> str:
    """The README.md of a pushed model (figures and config come from ``run_dir``'s files, if any)."""
    cfg = model.cfg
    llm = getattr(getattr(cfg, "llm", None), "name_or_path", None)
    lines = [
        "---", "library_name: clover-lavis", "pipeline_tag: image-text-to-text",
        "tags: [pathology, blip-2, instructblip, clover]", "---", "",
        f"# {repo_id.split('/')[-1]}", "",
        f"A CLOVER / BLIP-2 model (`{cfg.arch}`, `{cfg.model_type}`): image encoder `{cfg.vision['name']}`, "
        f"{cfg.qformer.num_query_tokens} queries" + (f", language model `{llm}`." if llm else "."), "",
        "```python", "from lavis.models import load_pretrained", "",
        f'loaded = load_pretrained("{repo_id}")  # the model, its eval image and question processors', "```", "",
        "## Conversation contract", "",
        "How the model was instruction-tuned; whatever serves it must follow it "
        "(`single_turn`: each question on its own).", "",
        "```json", json.dumps(contract.as_dict(), indent=1), "```", "",
    ]  # fmt: skip
    metrics = sorted(run_dir.glob("*_metrics.json")) if run_dir else []
    if metrics:
        lines += ["## Evaluation", "", "| file | metric | value |", "|---|---|---:|"]
        for path in metrics:
            figures = _figures(json.loads(path.read_text()))
            lines += [f"| {path.name} | {key} | {value:.4g} |" for key, value in figures]
        lines.append("")
    config = run_dir / "config.yaml" if run_dir else None
    if config is not None and config.is_file():
        lines += ["## Training config", "", "```yaml", config.read_text().rstrip(), "```", ""]
    return "\n".join(lines)


def push_to_hub(folder: str | os.PathLike, repo_id: str, card: str, private: bool = False) -> str:
    """Write ``card`` as the folder's README.md and upload the folder to ``repo_id`` (created if
    needed); returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    atomic_write_text(folder / CARD_NAME, card)
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Upload CLOVER model")
    return str(commit.commit_url)


def hub_folder(repo_id: str) -> tuple[Path, str]:
    """(local folder, "ours" | "hf") for a hub repo: our layout in full, the HF one as ``from_hf`` fetches it."""
    from huggingface_hub import snapshot_download

    from lavis.models.interop.hf_load import resolve_hf_folder

    try:
        head = Path(snapshot_download(repo_id, allow_patterns=_LAYOUT_FILES))
        if (head / OUR_CONFIG).is_file() and not (head / "config.json").is_file():
            return Path(snapshot_download(repo_id)), "ours"
    except Exception as err:  # offline without a cached copy, unknown or gated repo, no network
        raise WeightsNotFoundError(
            f"'{repo_id}' could not be fetched from the hub ({type(err).__name__}: {err}). Download it with "
            f"`hf download {repo_id} --local-dir <folder>` and pass that folder."
        ) from err
    return resolve_hf_folder(repo_id), "hf"
