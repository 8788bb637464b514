"""Does length grouping change what stage 2 learns? Full training runs at tiny size through the
real ``RunnerEpoch`` on the instruction mix (benchmarks/instruction_mix.py), grouped and random
batches from the same seeds (same initial weights, same data, same schedule), a held-out
validation loss after every epoch.

    python -m benchmarks.grouping_loss --seeds 0 1 2 --epochs 10 --samples 256

Runs are paired by seed (same initial weights and data), so the comparison is paired: per epoch,
the mean over seeds of (grouped - random) against twice its standard error. The verdict
("within noise") is taken on the final held-out loss; the epochs where the difference exceeds
the noise are listed (with 10 epochs at 2 standard errors, one such epoch is expected by chance). A third
run per seed groups without the loss weights (``run.length_group_loss_weights: false``, each
batch's plain token mean), to show what the weights are for.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from benchmarks.data_files import write_frames
from benchmarks.instruction_mix import make_pairs, word_counts
from benchmarks.sizes import SIZES, build_ours, make_assets, our_overrides
from benchmarks.stage2_epoch import FRAME
from benchmarks.timing import command_line, emit
from benchmarks.train_step import WORK


def write_data(root: Path, samples: int, held_out: int, images: int) -> None:
    frames = write_frames(root / "quilt_1m", [FRAME], images)
    for name, count, seed in (("train", samples, 1), ("val", held_out, 2)):
        lines = [json.dumps({"question": p.question, "answer": p.answer, "image": frames[i % images].name,
                             "caption_id": i, "source": p.source, "answer_type": p.answer_type})
                 for i, p in enumerate(make_pairs(count, seed=seed))]
        (root / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


def train_once(root: Path, out: Path, seed: int, grouped: bool, epochs: int, batch: int, lr: float,
               **run_keys: Any) -> dict[str, Any]:
    """One training run; ``run_keys`` override run-section keys (e.g. ``length_group_megabatch``)."""
    from lavis.cli import build_parser, load
    from lavis.runners import RUNNERS
    from lavis.tasks import TASKS

    size = SIZES["tiny"]
    processor = {"name": "pathology_image_eval", "image_size": size.vision.image_size}
    name = f"{'grouped' if grouped else 'random'}_seed{seed}" + "".join(f"_{k}_{v}" for k, v in run_keys.items())
    cfg = {
        "model": {"arch": size.arch, "model_type": "tiny", **our_overrides(size, make_assets(WORK / "assets"), "fp32", "fp32")},
        "datasets": {"clover_instructions": {"storage": str(root), "files": {"train": "train.jsonl", "val": "val.jsonl"},
                                             "vis_processor": {"train": processor, "eval": processor}}},
        "run": {"task": "instruction_tuning", "output_dir": str(out / name), "device": "cpu", "seed": seed,
                "batch_size_train": batch, "batch_size_eval": 32, "num_workers": 0, "progress_bar": False,
                "log_freq": 4, "max_epoch": epochs, "valid_splits": ["val"], "init_lr": lr, "warmup_steps": 10,
                "group_by_length": grouped, "keep_last": 1, "feature_cache_dir": str(out / "cache"), **run_keys},
    }
    path = out / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    cfg = load(build_parser("bench", None).parse_args(["--cfg-path", str(path)]))
    task = TASKS.get(cfg.run.task)(cfg.task)
    torch.manual_seed(seed)  # the same initial weights for grouped and random
    model = build_ours(size, make_assets(WORK / "assets"))
    with torch.no_grad():  # transformers' T5 init gives the output layer std 1 (logits of std ~8, loss
        model.llm.lm_head.weight.mul_(0.1)  # ~37): a calmer frozen LM starts near ln(vocabulary)
    if (out / name / "checkpoints").exists():
        import shutil

        shutil.rmtree(out / name)
    RUNNERS.get("runner_epoch")(cfg, task, model, task.build_datasets(cfg)).train()
    rows = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    return {"train": [[r["step"], r["loss"]] for r in rows if r["type"] == "train"],
            "val": [r["loss"] for r in rows if r["type"] == "eval"]}


def compare(curves: dict[str, list[list[float]]]) -> dict[str, Any]:
    """Per epoch: mean validation loss of each mode over seeds, the mean paired difference
    (grouped - random, same seed) and twice its standard error; ``within_noise`` when the last
    epoch's |difference| is below that, ``epochs_outside`` where it is not (1-based)."""
    grouped, random = np.asarray(curves["grouped"]), np.asarray(curves["random"])
    seeds = grouped.shape[0]
    paired = grouped - random
    diff = paired.mean(axis=0)
    if seeds > 1:
        noise = 2 * paired.std(axis=0, ddof=1) / math.sqrt(seeds)
    else:
        noise = np.full_like(diff, math.nan)
    return {
        "grouped_mean": grouped.mean(axis=0).tolist(), "random_mean": random.mean(axis=0).tolist(),
        "difference": diff.tolist(), "two_standard_errors": noise.tolist(),
        "within_noise": bool(seeds > 1 and abs(diff[-1]) <= noise[-1]),
        "epochs_outside": [int(e) + 1 for e in np.flatnonzero(~(np.abs(diff) <= noise))],
        "first_to_last_drop": float(random.mean(axis=0)[0] - random.mean(axis=0)[-1]),
    }


def run(seeds: list[int], epochs: int = 10, samples: int = 256, held_out: int = 64, batch: int = 8,
        lr: float = 1e-3, images: int = 16) -> dict[str, Any]:
    torch.set_num_threads(1)
    out = WORK / "grouping_loss"
    write_data(out / "data", samples, held_out, images)
    modes = {"grouped": {"grouped": True}, "random": {"grouped": False},
             "grouped_unweighted": {"grouped": True, "length_group_loss_weights": False}}
    runs = {f"{mode}_seed{seed}": train_once(out / "data", out, seed, epochs=epochs, batch=batch, lr=lr, **keys)
            for seed in seeds for mode, keys in modes.items()}
    curves = {mode: [runs[f"{mode}_seed{seed}"]["val"] for seed in seeds] for mode in modes}
    return {"size": "tiny", "seeds": seeds, "epochs": epochs, "samples": samples, "held_out": held_out, "batch": batch,
            "steps_per_run": epochs * math.ceil(samples / batch), "init_lr": lr,
            "words": word_counts(make_pairs(samples, seed=1)), "runs": runs, "val_loss": compare(curves),
            "val_loss_unweighted": compare({"grouped": curves["grouped_unweighted"], "random": curves["random"]})}


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__, batch=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--held-out", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    emit(run(args.seeds, args.epochs, args.samples, args.held_out, args.batch, args.lr), args.out)


if __name__ == "__main__":
    main()
