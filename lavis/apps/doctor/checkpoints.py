"""Checkpoints a run starts from (``model.init_checkpoint``, ``model.checkpoint``, ``run.resume``):
present and intact, holding the tensors the model needs, and trained with the LLM, tokenizers and
image encoder the config names (the provenance record; ``lavis.common.provenance``)."""

from __future__ import annotations

from pathlib import Path

from lavis.apps.doctor.context import Context
from lavis.apps.doctor.report import FAIL, PASS, SKIP, WARN
from lavis.apps.doctor.weights import source_line
from lavis.common.checkpoint import STATE_NAME, latest_checkpoint
from lavis.common.paths import run_output_dir
from lavis.common.provenance import compare_provenance, read_provenance, safetensors_header

CHECKPOINT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                    "pytorch_model.bin.index.json")


def _ours(files: list[Path]) -> Path | None:
    """Our checkpoint's safetensors file (one with a provenance record or a training state beside it)."""
    for file in files:
        if file.suffix == ".safetensors" and (read_provenance(file) is not None or (file.parent / STATE_NAME).is_file()):
            return file
    return None


def _key_check(ctx: Context, check: str, file: Path, strict: bool) -> None:
    """Compare the checkpoint's tensor names with the model's trainable parameters (meta model)."""
    if ctx.meta_model is None:
        return
    names = set(safetensors_header(file)) - {"__metadata__"}
    trainable = {n for n, p in ctx.meta_model.named_parameters() if p.requires_grad}
    missing = sorted(trainable - names)
    line = ctx.report.line(check)
    if strict and missing:
        line.verdict = FAIL
        line.detail = (f"{file} lacks {len(missing)} of the model's {len(trainable)} trainable tensors "
                       f"(first: {missing[:4]}): loading it would fail")
    elif not strict and not trainable & names:
        line.verdict = WARN
        line.detail = f"{file} holds none of the model's trainable tensors: it would initialise nothing"


def _provenance(ctx: Context, label: str, source: str) -> None:
    from lavis.models.provenance import checkpoint_record, describe

    recorded, origin = checkpoint_record(source)
    check = f"{label} provenance"
    if recorded is None:
        ctx.report.add(check, SKIP, f"{origin}: cannot tell which LLM and encoder it was trained with")
        return
    if ctx.current_record is None:
        ctx.current_record = describe(ctx.model_cfg)
    differences = compare_provenance(recorded, ctx.current_record)
    errors = [d for d in differences if d.error]
    if errors:
        ctx.report.add(check, FAIL, f"{origin}, but differs from the config: " + "; ".join(map(str, errors)))
    elif differences:
        ctx.report.add(check, WARN, "; ".join(map(str, differences)))
    else:
        llm = (recorded.get("llm") or {}).get("name_or_path")
        ctx.report.add(check, PASS, f"{origin}; same {'LLM (' + llm + '), ' if llm else ''}tokenizers and encoder")


def check_one(ctx: Context, label: str, key: str, source: str, strict: bool, resume: bool = False) -> None:
    from lavis.models.provenance import KNOWN_RELEASES

    found = source_line(ctx, label, key, source, CHECKPOINT_FILES)
    if found is None or not found.on_disk or ctx.report.line(label).verdict == FAIL:
        if Path(source.rstrip("/")).name in KNOWN_RELEASES:  # known by name, on disk or not
            _provenance(ctx, label, source)
        return
    if resume and not (found.files[0].parent / STATE_NAME).is_file():
        line = ctx.report.line(label)
        line.verdict, line.detail = FAIL, f"{source} has no {STATE_NAME}: it cannot be resumed from (weights only)"
        return
    ours = _ours(found.files)
    if ours is not None:
        _key_check(ctx, label, ours, strict)
    _provenance(ctx, label, source)


def check_checkpoints(ctx: Context) -> None:
    model = ctx.model_cfg
    init = getattr(model, "init_checkpoint", None)
    if init:
        check_one(ctx, "init checkpoint", "model.init_checkpoint", init, strict=False)
    if model.checkpoint:
        check_one(ctx, "checkpoint", "model.checkpoint", model.checkpoint, strict=True)
    resume = ctx.cfg.run.resume
    if resume and ctx.training:
        if resume == "auto":
            folder = run_output_dir(ctx.cfg) / "checkpoints"
            latest = latest_checkpoint(folder)
            if latest is None:
                ctx.report.add("resume", PASS, f"run.resume=auto: no checkpoint in {folder} yet, the run starts fresh")
                return
            resume = str(latest)
        check_one(ctx, "resume", "run.resume", resume, strict=True, resume=True)
