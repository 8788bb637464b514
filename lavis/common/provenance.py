"""What a checkpoint was trained with, stored inside it, and how to compare that with a config.

A checkpoint's ``model.safetensors`` carries a small JSON record under the header metadata key
``lavis_provenance`` (written with the weights by the same atomic save, so a checkpoint and its
record can never disagree, and the record travels with the file when it is copied alone):

    {"format": 1, "created": "...Z", "model": {"arch": "blip2_vicuna_instruct", "model_type": "vicuna7b"},
     "llm": {"name_or_path": "lmsys/vicuna-7b-v1.1", "revision": "<hub commit or null>",
             "config_sha256": "...", "tokenizer_sha256": "..."},
     "vision": {"name": "eva_clip_g", "pretrained": "...", "precision": "fp16",
                "file_sha256": "...", "encoder_digest": "..."},
     "qformer": {"tokenizer_sha256": "..."}}

``read_provenance`` reads it from the file header only (no tensor is loaded);
``compare_provenance`` lists what differs from the current model's record, each difference an
error (the weights would be used with the wrong frozen parts: a Q-Former trained on Vicuna v1.1
fed to v1.5 answers garbage) or a warning. The record of the current config is built by
``lavis.models.provenance``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from pathlib import Path
from typing import Any

from lavis.common.checkpoint import WEIGHTS_NAME

PROVENANCE_KEY = "lavis_provenance"
FORMAT = 1


def provenance_metadata(record: dict[str, Any]) -> dict[str, str]:
    """The safetensors header metadata that stores ``record`` (metadata values must be strings)."""
    return {PROVENANCE_KEY: json.dumps(record, sort_keys=True)}


def safetensors_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes, ``__metadata__``)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) != 8:
            raise ValueError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > 100 << 20 or length > os.path.getsize(path) - 8:
            raise ValueError(f"header length {length} does not fit the file")
        return json.loads(handle.read(length))


def read_provenance(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The record stored in a checkpoint folder (or its ``.safetensors`` file); None when the
    checkpoint has none (older checkpoints, LAVIS ``.pth`` files, HF folders) or is not ours."""
    path = Path(checkpoint)
    file = path / WEIGHTS_NAME if path.is_dir() else path
    if file.suffix != ".safetensors" or not file.is_file():
        return None
    try:
        metadata = safetensors_header(file).get("__metadata__") or {}
        record = json.loads(metadata[PROVENANCE_KEY]) if PROVENANCE_KEY in metadata else None
    except (OSError, ValueError, KeyError):
        return None
    return record if isinstance(record, dict) else None


@dataclasses.dataclass(frozen=True)
class Difference:
    field: str
    recorded: Any
    current: Any
    error: bool  # False: a warning
    why: str

    def __str__(self) -> str:
        return f"{self.field}: checkpoint {self.recorded!r}, config {self.current!r} ({self.why})"


def _is_hub_id(value: Any) -> bool:
    text = str(value or "")
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not os.path.exists(text)


def _known_both(a: Any, b: Any) -> bool:
    return a is not None and b is not None


def _compare_llm(old: dict[str, Any], new: dict[str, Any]) -> list[Difference]:
    out = []
    name_a, name_b = old.get("name_or_path"), new.get("name_or_path")
    if name_a != name_b:
        hub_ids = _is_hub_id(name_a) and _is_hub_id(name_b)
        why = ("a different language model" if hub_ids else
               "different paths; the files are compared below")
        out.append(Difference("llm.name_or_path", name_a, name_b, hub_ids, why))
    for key, why in (("revision", "another commit of the model"),
                     ("config_sha256", "its config.json differs: another model or version"),
                     ("tokenizer_sha256", "another vocabulary or special tokens")):
        if _known_both(old.get(key), new.get(key)) and old[key] != new[key]:
            out.append(Difference(f"llm.{key}", old[key], new[key], True, why))
    return out


def _compare_vision(old: dict[str, Any], new: dict[str, Any]) -> list[Difference]:
    out = []
    if old.get("name") != new.get("name"):
        out.append(Difference("vision.name", old.get("name"), new.get("name"), True, "another image encoder"))
    if _known_both(old.get("file_sha256"), new.get("file_sha256")):
        if old["file_sha256"] != new["file_sha256"]:
            out.append(Difference("vision.file_sha256", old["file_sha256"], new["file_sha256"], True,
                                  "other image encoder weights: the Q-Former learned another feature space"))
    elif (_known_both(old.get("encoder_digest"), new.get("encoder_digest"))
          and old.get("precision") == new.get("precision") and old["encoder_digest"] != new["encoder_digest"]):
        out.append(Difference("vision.encoder_digest", old["encoder_digest"], new["encoder_digest"], True,
                              "other image encoder weights"))
    return out


def compare_provenance(recorded: dict[str, Any], current: dict[str, Any]) -> list[Difference]:
    """Differences between a checkpoint's record and the current one (see the module doc)."""
    out: list[Difference] = []
    old_llm, new_llm = recorded.get("llm"), current.get("llm")
    if old_llm and new_llm:
        out += _compare_llm(old_llm, new_llm)
    if recorded.get("vision") and current.get("vision"):
        out += _compare_vision(recorded["vision"], current["vision"])
    old_q = (recorded.get("qformer") or {}).get("tokenizer_sha256")
    new_q = (current.get("qformer") or {}).get("tokenizer_sha256")
    if _known_both(old_q, new_q) and old_q != new_q:
        out.append(Difference("qformer.tokenizer_sha256", old_q, new_q, True, "another Q-Former vocabulary"))
    return out
