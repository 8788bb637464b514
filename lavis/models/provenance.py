"""The provenance record of a model config (see ``lavis.common.provenance``): which language
model, tokenizers and image-encoder weights it uses, computed from files, never from loaded
weights (the doctor runs it before anything is loaded; a runner adds the loaded encoder's digest).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from lavis.common.hashing import file_sha256
from lavis.common.provenance import FORMAT, read_provenance
from lavis.models.sources import locate

logger = logging.getLogger(__name__)

LLM_WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                    "pytorch_model.bin")
# config.json keys that change with the saving library, not with the model
_VOLATILE_CONFIG_KEYS = {"_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype", "use_cache"}

# LAVIS release files carry no record; what they were trained with is documented by LAVIS
# (InstructBLIP: Vicuna v1.1 and FlanT5 from the Hugging Face Hub).
KNOWN_RELEASES: dict[str, dict[str, Any]] = {
    "instruct_blip_vicuna7b_trimmed.pth": {"llm": {"name_or_path": "lmsys/vicuna-7b-v1.1"}},
    "instruct_blip_vicuna13b_trimmed.pth": {"llm": {"name_or_path": "lmsys/vicuna-13b-v1.1"}},
    "instruct_blip_flanxl_trimmed.pth": {"llm": {"name_or_path": "google/flan-t5-xl"}},
    "instruct_blip_flanxxl_trimmed.pth": {"llm": {"name_or_path": "google/flan-t5-xxl"}},
}

_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a weights file: the Hub cache's blob name when it is one (LFS blobs are named
    by their sha256), else hashed once per process (size and mtime key the memo)."""
    real = path.resolve()
    if real.parent.name == "blobs" and len(real.name) == 64:
        return real.name
    stat = real.stat()
    key = (str(real), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(real)
    return _DIGESTS[key]


def files_digest(paths: list[Path]) -> str | None:
    if not paths:
        return None
    if len(paths) == 1:
        return file_digest(paths[0])
    combined = hashlib.sha256("".join(f"{p.name}:{file_digest(p)}\n" for p in sorted(paths)).encode())
    return combined.hexdigest()


def config_sha256(path: Path) -> str:
    """sha256 of a transformers config.json without the keys that only record how it was saved."""
    data = json.loads(path.read_text(encoding="utf-8"))
    kept = {k: v for k, v in data.items() if k not in _VOLATILE_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def tokenizer_sha256(tokenizer: Any) -> str:
    """sha256 of the vocabulary (token -> id) and the special token ids: equal for the same
    tokenizer whatever file format it was saved in."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: (item[1], item[0]))
    special = {k: getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "pad", "unk")}
    return hashlib.sha256(json.dumps({"vocab": vocab, "special": special}).encode()).hexdigest()


def llm_record(llm_cfg: Any, tokenizer: Any | None = None) -> dict[str, Any]:
    from lavis.common.errors import LavisError
    from lavis.models.llm.loading import load_llm_tokenizer

    found = locate(llm_cfg.name_or_path, ["config.json"], ask_size=False)
    config = next((f for f in found.files if f.name == "config.json"), None) if found.on_disk else None
    if config is None and found.on_disk and found.files:
        candidate = found.files[0].parent / "config.json"
        config = candidate if candidate.is_file() else None
    if tokenizer is None:
        try:
            tokenizer = load_llm_tokenizer(llm_cfg)
        except (LavisError, OSError, ValueError):
            tokenizer = None
    return {
        "name_or_path": llm_cfg.name_or_path,
        "revision": found.revision,
        "config_sha256": config_sha256(config) if config is not None else None,
        "tokenizer_sha256": tokenizer_sha256(tokenizer) if tokenizer is not None else None,
    }


def vision_weight_files(vision: dict[str, Any]) -> tuple[str, ...]:
    """The file names an encoder looks for inside a folder or hub repo."""
    from lavis.models.vision.clip_vit import CLIP_WEIGHT_FILES
    from lavis.models.vision.eva_vit import EVA_WEIGHT_FILES
    from lavis.models.vision.open_clip_encoder import OPEN_CLIP_WEIGHT_FILES

    return {"eva_clip_g": EVA_WEIGHT_FILES, "clip_L": CLIP_WEIGHT_FILES, "open_clip": OPEN_CLIP_WEIGHT_FILES}.get(
        vision.get("name"), ("model.safetensors", "pytorch_model.bin")
    )


def vision_source(vision: dict[str, Any]) -> str | None:
    """Where the encoder's weights come from (an open_clip tag resolved to its hub repo or URL)."""
    pretrained = vision.get("pretrained")
    if pretrained and vision.get("name") == "open_clip":
        from lavis.models.vision.open_clip_encoder import open_clip_weights_source

        return open_clip_weights_source(vision.get("model_name", ""), pretrained)[0]
    return pretrained


def vision_record(vision: dict[str, Any], encoder: Any | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"name": vision.get("name"), "pretrained": vision.get("pretrained"),
                              "precision": vision.get("precision"), "file_sha256": None, "encoder_digest": None}
    source = vision_source(vision)
    if source:
        found = locate(source, vision_weight_files(vision), ask_size=False)
        if found.on_disk:
            record["file_sha256"] = files_digest([f for f in found.files if not f.name.endswith(".json")])
    if encoder is not None:
        from lavis.common.tensor_digest import weights_digest

        record["encoder_digest"] = weights_digest([encoder])
    return record


def qformer_record(qformer_cfg: Any, tokenizer: Any | None = None) -> dict[str, Any]:
    from lavis.common.errors import LavisError
    from lavis.models.qformer import load_qformer_tokenizer

    if tokenizer is None:
        try:
            tokenizer = load_qformer_tokenizer(qformer_cfg.tokenizer)
        except (LavisError, OSError, ValueError):
            tokenizer = None
    return {"tokenizer": qformer_cfg.tokenizer,
            "tokenizer_sha256": tokenizer_sha256(tokenizer) if tokenizer is not None else None}


def describe(model_cfg: Any, model: Any | None = None) -> dict[str, Any]:
    """The record of ``model_cfg`` (and of ``model``'s loaded encoder and tokenizers, if given)."""
    record: dict[str, Any] = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {"arch": getattr(model_cfg, "arch", None), "model_type": getattr(model_cfg, "model_type", None)},
    }
    vision = getattr(model_cfg, "vision", None)
    if isinstance(vision, dict):
        record["vision"] = vision_record(vision, getattr(model, "visual_encoder", None))
    qformer = getattr(model_cfg, "qformer", None)
    if qformer is not None:
        record["qformer"] = qformer_record(qformer, getattr(model, "_tokenizer", None))
    llm = getattr(model_cfg, "llm", None)
    if llm is not None:
        bridge = getattr(model, "_bridge", None)
        record["llm"] = llm_record(llm, bridge.tokenizer if bridge is not None else None)
    contract = getattr(model_cfg, "conversation", None)
    if contract is not None:  # how it was instruction-tuned: single questions or conversations
        record["conversation"] = contract.as_dict()
    return record


def describe_model(model: Any) -> dict[str, Any]:
    """The record a checkpoint of ``model`` stores; never fails a run (unknown parts are null)."""
    try:
        return describe(model.cfg, model)
    except Exception as err:  # provenance is a safety net, not a reason to lose a checkpoint
        logger.warning("checkpoint provenance incomplete: %s: %s", type(err).__name__, err)
        return {"format": FORMAT, "error": f"{type(err).__name__}: {err}"}


def checkpoint_record(source: str) -> tuple[dict[str, Any] | None, str]:
    """(record, where it came from) for a checkpoint source: its own record, else a known LAVIS
    release by file name, else (None, why not)."""
    found = locate(source, ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"],
                   ask_size=False)
    for file in found.files if found.on_disk else []:
        record = read_provenance(file)
        if record is not None:
            return record, "recorded in the checkpoint"
    name = os.path.basename(source.rstrip("/"))
    if name in KNOWN_RELEASES:
        return KNOWN_RELEASES[name], f"LAVIS release {name}"
    return None, "no provenance recorded (not a checkpoint written by this framework)"
