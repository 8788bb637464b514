"""Weight sources: each one on disk (and intact), in a cache, or fetchable (and how big), never
loaded. Covers the image encoder, the Q-Former's BERT init and tokenizer, the LLM and its tokenizer."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from safetensors import safe_open

from lavis.apps.doctor.context import Context, Download
from lavis.apps.doctor.report import FAIL, PASS, SKIP, WARN
from lavis.common.disk import human_bytes
from lavis.common.user_files import file_problem
from lavis.models.sources import MISSING, REMOTE, Located, locate
from lavis.models.vision.weights import offline_mode, url_cache_dir, why_unreadable

LLM_WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                    "pytorch_model.bin")
BERT_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def damaged(files: list[Path]) -> str | None:
    """Why the on-disk weight files cannot be loaded as the run loads them, or None. Reads no
    tensor: safetensors are opened (their header checked against the file size), ``.pth`` /
    ``.bin`` unpickled with ``weights_only`` and memory-mapped storages (objects besides tensors
    are refused, as the run refuses them)."""
    for file in files:
        problem = file_problem(file)
        if problem == "file not found":
            return f"{file} is missing (named by the shard index)"
        if problem:
            return f"{file}: {problem}"
        try:
            if file.suffix == ".safetensors":
                with safe_open(str(file), framework="pt"):
                    pass
            elif file.suffix in (".pth", ".pt", ".bin", ".ckpt"):
                _unpickle_lazily(file)
            elif file.name.endswith(".json"):
                json.loads(file.read_text())
        except Exception as err:  # noqa: BLE001  (each reader has its own error types; all mean "unusable")
            return f"{file} is unreadable or truncated: {why_unreadable(file, err)}"
    return None


def _unpickle_lazily(file: Path) -> None:
    """``torch.load(weights_only=True)`` without reading the tensors (memory-mapped, zip format)."""
    import torch

    with open(file, "rb") as handle:
        zipped = handle.read(4) == b"PK\x03\x04"
    if zipped and not zipfile.is_zipfile(file):
        raise ValueError("the file is truncated (a torch.save zip without its central directory)")
    torch.load(file, map_location="cpu", weights_only=True, mmap=zipped)


def fetch_hint(source: str) -> str:
    if source.startswith(("http://", "https://")):
        return f"`wget -P {url_cache_dir()} {source}`"
    return f"`hf download {source} --local-dir <folder>` and point the key at <folder>"


def source_line(ctx: Context, check: str, key: str, source: str | None, filenames: tuple[str, ...] | list[str],
                null: tuple[str, str] | None = None) -> Located | None:
    """One report line for a weight source; returns where it is (None when not configured)."""
    if not source:
        if null is not None:
            ctx.report.add(check, *null)
        return None
    found = locate(source, list(filenames))
    if found.on_disk:
        problem = damaged(found.files)
        if problem:
            ctx.report.add(check, FAIL, f"{key}: {problem}")
            return found
        where = found.files[0] if len(found.files) == 1 else f"{found.files[0].parent} ({len(found.files)} files)"
        revision = f", revision {found.revision[:12]}" if found.revision else ""
        ctx.report.add(check, PASS, f"{found.kind}: {where} ({human_bytes(found.bytes)}{revision})")
    elif found.kind == REMOTE:
        if offline_mode():
            ctx.report.add(check, FAIL, f"{key}={source} is {found.detail} and downloads are off (HF_HUB_OFFLINE); "
                                        f"fetch it with {fetch_hint(source)}")
        else:
            folder = url_cache_dir() if source.startswith(("http://", "https://")) else hub_cache_dir()
            ctx.downloads.append(Download(check, folder, found.remote_bytes))
            ctx.report.add(check, WARN, f"{key}={source} is {found.detail}: the run will download "
                                        f"{human_bytes(found.remote_bytes)} into {folder}")
    elif found.kind == MISSING:
        ctx.report.add(check, FAIL, f"{key}={source}: {found.detail}")
    return found


def _config_json(found: Located | None) -> dict[str, Any] | None:
    if found is None or not found.on_disk or not found.files:
        return None
    path = found.files[0].parent / "config.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def check_vision(ctx: Context) -> None:
    from lavis.models.provenance import vision_source, vision_weight_files

    vision = ctx.model_cfg.vision
    source = vision_source(vision)
    null = (WARN, "pretrained: null: the frozen encoder keeps its random init unless model.checkpoint holds "
                  "its weights")
    source_line(ctx, "vision weights", "model.vision.pretrained", source, vision_weight_files(vision), null)


def check_qformer(ctx: Context) -> None:
    qcfg = ctx.model_cfg.qformer
    if ctx.model_cfg.checkpoint:
        ctx.report.add("Q-Former init (BERT)", SKIP, "not read: model.checkpoint replaces every trainable weight")
    else:
        found = source_line(ctx, "Q-Former init (BERT)", "model.qformer.pretrained", qcfg.pretrained,
                            BERT_WEIGHT_FILES, (WARN, "pretrained: null: the Q-Former starts from random weights"))
        config = _config_json(found)
        if config is not None:
            pairs = [("hidden_size", qcfg.hidden_size), ("num_attention_heads", qcfg.num_heads),
                     ("intermediate_size", qcfg.intermediate_size)]
            wrong = [f"{k}={config.get(k)} (model.qformer: {v})" for k, v in pairs if config.get(k) != v]
            if wrong:
                ctx.report.line("Q-Former init (BERT)").verdict = FAIL
                ctx.report.line("Q-Former init (BERT)").detail = f"BERT config does not fit the Q-Former: {', '.join(wrong)}"
    check_qformer_tokenizer(ctx)


def check_qformer_tokenizer(ctx: Context) -> None:
    from lavis.common.errors import LavisError
    from lavis.models.qformer import load_qformer_tokenizer

    qcfg = ctx.model_cfg.qformer
    check = "Q-Former tokenizer"
    found = source_line(ctx, check, "model.qformer.tokenizer", qcfg.tokenizer, ["vocab.txt"])
    if found is None or not found.on_disk or ctx.report.line(check).verdict == FAIL:
        return
    line = ctx.report.line(check)
    try:
        tokenizer = load_qformer_tokenizer(str(found.files[0].parent))
    except (LavisError, OSError, ValueError) as err:
        line.verdict, line.detail = FAIL, f"model.qformer.tokenizer={qcfg.tokenizer}: {err}"
        return
    if len(tokenizer) > qcfg.vocab_size:
        line.verdict = FAIL
        line.detail = (f"{len(tokenizer)} tokens with [DEC], but model.qformer.vocab_size is {qcfg.vocab_size}: "
                       "ids past the embedding table")
        return
    line.detail = f"{found.kind}: {found.files[0]} ({len(tokenizer)} tokens with [DEC])"


def check_llm(ctx: Context) -> None:
    from lavis.models import MODELS

    llm = ctx.model_cfg.llm
    found = source_line(ctx, "LLM weights", "model.llm.name_or_path", llm.name_or_path, LLM_WEIGHT_FILES)
    if found is None or not found.on_disk:
        ctx.report.add("LLM tokenizer", SKIP, "checked once the LLM is on disk (see LLM weights)")
        return
    config = _config_json(found)
    kind = getattr(MODELS.get(ctx.model_cfg.arch), "LLM_KIND", None)
    if config is not None and kind is not None:
        seq2seq = bool(config.get("is_encoder_decoder"))
        if seq2seq != (kind == "seq2seq"):
            line = ctx.report.line("LLM weights")
            line.verdict = FAIL
            line.detail = (f"{llm.name_or_path} is a {'encoder-decoder' if seq2seq else 'decoder-only'} model "
                           f"({config.get('model_type')}), but {ctx.model_cfg.arch} needs a {kind} LLM")
    check_llm_tokenizer(ctx, config)


def tokenizer_mismatches(tokenizer: Any, config: dict[str, Any], llm_cfg: Any, kind: str | None) -> list[str]:
    """What makes the tokenizer unusable with this LLM's config (empty when they fit)."""
    problems = []
    vocab = config.get("vocab_size")
    if vocab is not None and len(tokenizer) > vocab:
        problems.append(f"{len(tokenizer)} tokens but the model's embedding has {vocab} rows")
    eos = config.get("eos_token_id")
    eos_ids = set(eos) if isinstance(eos, list) else {eos}
    if tokenizer.eos_token_id is None:
        problems.append("the tokenizer has no EOS token (answers could never end)")
    elif eos is not None and tokenizer.eos_token_id not in eos_ids:
        problems.append(f"EOS id {tokenizer.eos_token_id} ({tokenizer.eos_token!r}), the model's config says {eos}")
    if kind == "causal" and llm_cfg.bos_token is None:
        bos = config.get("bos_token_id")
        if bos is not None and tokenizer.bos_token_id is not None and tokenizer.bos_token_id != bos:
            problems.append(f"BOS id {tokenizer.bos_token_id}, the model's config says {bos}")
    if kind == "seq2seq":
        start = config.get("decoder_start_token_id")
        if start is not None and tokenizer.pad_token_id is not None and start != tokenizer.pad_token_id:
            problems.append(f"decoder starts with id {start} but the tokenizer pads with {tokenizer.pad_token_id}")
    return problems


def check_llm_tokenizer(ctx: Context, config: dict[str, Any] | None) -> None:
    from lavis.common.errors import LavisError
    from lavis.models import MODELS
    from lavis.models.llm.loading import load_llm_tokenizer

    llm = ctx.model_cfg.llm
    try:
        tokenizer = load_llm_tokenizer(llm)  # from the folder or cache found above: nothing is fetched
    except (LavisError, OSError, ValueError) as err:
        ctx.report.add("LLM tokenizer", FAIL, f"model.llm.name_or_path={llm.name_or_path}: {err}")
        return
    if config is None:
        ctx.report.add("LLM tokenizer", SKIP, f"{len(tokenizer)} tokens; no config.json on disk to compare with")
        return
    kind = getattr(MODELS.get(ctx.model_cfg.arch), "LLM_KIND", None)
    problems = tokenizer_mismatches(tokenizer, config, llm, kind)
    if problems:
        ctx.report.add("LLM tokenizer", FAIL, f"does not match the LLM: {'; '.join(problems)}")
    else:
        ctx.report.add("LLM tokenizer", PASS, f"{len(tokenizer)} tokens, EOS {tokenizer.eos_token!r} "
                                              f"(id {tokenizer.eos_token_id}) as the LLM's config")
