"""Room for the run: disk for checkpoints, the feature cache and downloads (per file system), and
GPU memory per card for the configured batch (``lavis.models.memory``), with the largest batch
that fits. A card size can be simulated (``--gpu-memory`` / ``LAVIS_DOCTOR_GPU_MEMORY``) to plan
for machines other than this one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lavis.apps.doctor.context import Context
from lavis.apps.doctor.report import FAIL, PASS, SKIP, WARN
from lavis.common.disk import human_bytes
from lavis.common.paths import run_output_dir
from lavis.models.memory import GIB, estimate

CACHE_BYTES = {"fp16": 2, "bf16": 2}
CHECKPOINT_BYTES_PER_PARAM = 4 + 8  # fp32 weights and the two AdamW moments of each trainable parameter


def _existing(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _used(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def checkpoint_bytes(ctx: Context) -> tuple[int, int] | None:
    """(bytes of one checkpoint, how many exist at once) or None without a model to count."""
    if ctx.meta_model is None:
        return None
    trainable = sum(p.numel() for p in ctx.meta_model.parameters() if p.requires_grad)
    run = ctx.cfg.run
    # keep_last step folders, the one being written before the oldest is pruned, and "best"
    count = run.keep_last + 1 + (1 if run.valid_splits else 0)
    return trainable * CHECKPOINT_BYTES_PER_PARAM + (1 << 20), count


def feature_cache_bytes(ctx: Context) -> int:
    """Encoder features of the splits the run would cache (a fixed image transform)."""
    run = ctx.cfg.run
    encoder = getattr(ctx.meta_model, "visual_encoder", None)
    if run.feature_cache == "off" or encoder is None:
        return 0
    per_image = int(encoder.num_tokens) * int(encoder.num_features) * CACHE_BYTES[run.feature_cache_dtype]
    wanted = set(run.test_splits or run.valid_splits) if run.evaluate else {
        *run.train_splits, *run.valid_splits, *run.test_splits}
    images = 0
    for splits in ctx.data_sizes.values():
        for split, (_, distinct, deterministic) in splits.items():
            if split in wanted and (deterministic or (run.feature_cache == "on" and split in run.train_splits)):
                images += distinct
    return images * per_image


def check_disk(ctx: Context) -> None:
    run = ctx.cfg.run
    output = run_output_dir(ctx.cfg)
    needs: list[tuple[str, Path, int]] = []
    if ctx.training:
        sizes = checkpoint_bytes(ctx)
        if sizes is None:
            ctx.report.add("disk", SKIP, f"checkpoint size unknown ({ctx.meta_error}); {output} not checked")
        else:
            needs.append((f"{sizes[1]} checkpoints", output / "checkpoints", sizes[0] * sizes[1]))
    cache = feature_cache_bytes(ctx)
    if cache:
        folder = Path(run.feature_cache_dir or output / "feature_cache")
        needs.append(("feature cache", folder, max(0, cache - _used(folder))))
    for download in ctx.downloads:
        needs.append((f"download: {download.what}", download.folder, download.bytes or 0))
    groups: dict[int, list[tuple[str, Path, int]]] = {}
    for need in needs:
        groups.setdefault(os.stat(_existing(need[1])).st_dev, []).append(need)
    for group in groups.values():
        labels = ", ".join(label for label, _, _ in group)
        where = _existing(group[0][1])
        required = sum(size for _, _, size in group)
        free = shutil.disk_usage(where).free
        detail = f"{human_bytes(required)} needed ({labels}) under {group[0][1]}; {human_bytes(free)} free"
        if required > free:
            ctx.report.add(f"disk: {labels}", FAIL, detail + ": not enough room")
        else:
            ctx.report.add(f"disk: {labels}", WARN if required > 0.9 * free else PASS, detail)


def cards(ctx: Context) -> tuple[int, float, str] | None:
    """(count, bytes of the smallest card, what they are) or None when there is no GPU to check."""
    simulated = ctx.gpu_memory_gib or float(os.environ.get("LAVIS_DOCTOR_GPU_MEMORY", "0") or 0)
    if simulated:
        count = ctx.gpus or 1
        return count, simulated * GIB, f"{count} x {simulated:g} GiB (simulated)"
    import torch

    if not torch.cuda.is_available():
        return None
    visible = range(torch.cuda.device_count())
    props = [torch.cuda.get_device_properties(i) for i in visible]
    smallest = min(props, key=lambda p: p.total_memory)
    return len(props), float(smallest.total_memory), f"{len(props)} x {smallest.name} ({smallest.total_memory / GIB:.0f} GiB)"


def _memory_line(ctx: Context, check: str, train: bool, batch: int, capacity: float, what: str) -> None:
    model_cfg, run = ctx.model_cfg, ctx.cfg.run
    generation = getattr(ctx.cfg.task, "generation", None)  # GenerationOptions of the VQA/captioning tasks
    guess = estimate(
        ctx.meta_model, train=train, vision_precision=model_cfg.vision.get("precision", "fp32"),
        llm_dtype=getattr(getattr(model_cfg, "llm", None), "dtype", "fp32"),
        num_beams=getattr(generation, "num_beams", 5), max_new_tokens=getattr(generation, "max_new_tokens", 40),
    )
    if train and run.precision == "fp32":
        guess.per_sample *= 2  # activations calibrated under bf16 autocast
    needed = guess.needed(batch)
    largest = guess.largest_batch(capacity)
    key = "run.batch_size_train" if train else "run.batch_size_eval"
    detail = (f"~{needed / GIB:.1f} GiB per GPU at {key}={batch} (static {guess.static / GIB:.1f} GiB + "
              f"{guess.per_sample / GIB:.2f} GiB per sample at the longest texts); {what}; ")
    if largest == 0:
        ctx.report.add(check, FAIL, detail + "does not fit even at batch 1")
    elif needed > capacity:
        ctx.report.add(check, FAIL, detail + f"too big: the largest batch that fits is {largest}")
    else:
        ctx.report.add(check, PASS, detail + f"largest batch that fits: {largest}")


def check_gpu_memory(ctx: Context) -> None:
    run = ctx.cfg.run
    if run.device == "cpu":
        ctx.report.add("GPU memory", SKIP, "run.device=cpu")
        return
    if ctx.meta_model is None:
        ctx.report.add("GPU memory", SKIP, f"the model could not be sized: {ctx.meta_error}")
        return
    found = cards(ctx)
    if found is None:
        ctx.report.add("GPU memory", SKIP, "no CUDA device here; run the doctor on the training node, or pass "
                                           "--gpu-memory GiB to check against a card size")
        return
    _, capacity, what = found
    if ctx.training:
        _memory_line(ctx, "GPU memory (train)", True, run.batch_size_train, capacity, what)
    if run.evaluate or run.valid_splits or run.test_splits:
        if callable(getattr(ctx.meta_model, "generate", None)) and hasattr(type(ctx.meta_model), "bridge"):
            _memory_line(ctx, "GPU memory (eval)", False, run.batch_size_eval, capacity, what)
