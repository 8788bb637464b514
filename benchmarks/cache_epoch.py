"""Stage-2 epoch time with the frozen-encoder feature cache vs without, through the real runner
(``RunnerEpoch``: DataLoader workers, collate, ``micro_step``, AdamW) on JPEG tiles in the
LLaVA-Med layout, with a fixed (eval) image transform - the case ``run.feature_cache: auto`` caches.

    python -m benchmarks.cache_epoch --size base --images 16 --batch 4

Epochs alternate between the two runners (ABBA); the one-off cache build is timed separately.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.data_files import write_llava_json, write_tiles
from benchmarks.sizes import SIZES, build_ours, make_assets, our_overrides
from benchmarks.timing import alternate, command_line, emit, load_run_config
from benchmarks.train_step import WORK


def run_config(size: str, root: Path, mode: str, batch: int, workers: int, out: Path) -> Any:

    image_size = SIZES[size].vision.image_size
    processor = {"name": "pathology_image_eval", "image_size": image_size}
    cfg = {
        "model": {"arch": SIZES[size].arch, "model_type": "tiny",
                  **our_overrides(SIZES[size], make_assets(WORK / "assets"), "fp32", "fp32")},
        "datasets": {"llava_med": {"storage": str(root), "files": {"train": "train.json"},
                                   "vis_processor": {"train": processor, "eval": processor}}},
        "run": {"task": "instruction_tuning", "output_dir": str(out / mode), "device": "cpu", "seed": 0,
                "batch_size_train": batch, "batch_size_eval": batch, "num_workers": workers,
                "progress_bar": False, "log_freq": 10_000, "feature_cache": mode,
                "feature_cache_dir": str(out / "cache")},
    }
    return load_run_config(cfg, out / f"{mode}.yaml")


def epoch_runner(cfg: Any, model: torch.nn.Module) -> tuple[Any, float]:
    """A RunnerEpoch ready to train (loader, optimizer); returns it and its construction time,
    which includes building the feature cache when the config asks for one."""
    from lavis.runners import RUNNERS
    from lavis.tasks import TASKS

    task = TASKS.get(cfg.run.task)(cfg.task)
    datasets = task.build_datasets(cfg)
    start = time.perf_counter()
    runner = RUNNERS.get("runner_epoch")(cfg, task, model, datasets)
    built = time.perf_counter() - start
    runner.build_train_loader()
    runner.setup_training(total_steps=10_000)
    return runner, built


def one_epoch(runner: Any) -> None:
    """The body of ``RunnerEpoch.train`` for one epoch (no validation or checkpoint)."""
    per_epoch = runner.batches_per_epoch()
    runner.batches_done = 0
    runner.train_sampler.set_epoch(runner.epoch)
    for batch in runner.train_loader:
        runner.micro_step(batch, per_epoch)
    runner.epoch += 1


def unfused_adamw(runner: Any) -> Any:
    """The runner as it was before it asked for fused AdamW on CPU (per-tensor AdamW loop)."""
    from lavis.common.optim import build_adamw

    run = runner.run
    runner.step.optimizer = build_adamw(runner.model, lr=run.init_lr, weight_decay=run.weight_decay,
                                        betas=tuple(run.betas), lr_scales=run.lr_scales, fused=False)
    runner.scheduler.optimizer = runner.optimizer
    runner.scheduler.step_count -= 1
    runner.scheduler.step()  # sets the lr on the new param groups
    return runner


def run(size: str = "base", images: int = 16, batch: int = 4, workers: int = 2, rounds: int = 2,
        threads: int = 1, side: int = 512, before_after: bool = False) -> dict[str, Any]:
    """``before_after`` adds the cached epoch with the runner's previous (unfused) AdamW."""
    torch.set_num_threads(threads)
    out = WORK / f"cache_epoch_{size}"
    root = out / "data"
    write_llava_json(root / "train.json", write_tiles(root / "images", images, side))
    if (out / "cache").exists():  # time a fresh build every time
        import shutil

        shutil.rmtree(out / "cache")
    torch.manual_seed(0)
    model = build_ours(SIZES[size], make_assets(WORK / "assets"))
    plain, _ = epoch_runner(run_config(size, root, "off", batch, workers, out), model)
    cached, build_s = epoch_runner(run_config(size, root, "auto", batch, workers, out), model)
    epochs = {"without_cache": lambda: one_epoch(plain), "with_cache": lambda: one_epoch(cached)}
    if before_after:
        before = unfused_adamw(epoch_runner(run_config(size, root, "auto", batch, workers, out), model)[0])
        epochs["with_cache_unfused_adamw"] = lambda: one_epoch(before)
    timings = alternate(epochs, items_per_call=images, rounds=rounds, calls_per_round=1, warmup=1)
    epoch_s = {name: images / t["median"] for name, t in timings.items()}
    return {
        "size": size, "images": images, "source_side_px": side, "batch": batch, "num_workers": workers,
        "threads": threads, "cache_build_s": build_s, "epoch_s": epoch_s, "samples_per_s": timings,
        "speedup": epoch_s["without_cache"] / epoch_s["with_cache"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__, size="base", batch=4, rounds=2, threads=1)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--before-after", action="store_true", help="also time the runner with unfused AdamW")
    args = parser.parse_args(argv)
    emit(run(args.size, args.images, args.batch, args.workers, args.rounds, args.threads,
             before_after=args.before_after), args.out)


if __name__ == "__main__":
    main()
