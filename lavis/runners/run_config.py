"""The runner's keys of the ``run`` section (the task adds its own keys beside them)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from lavis.common.errors import ConfigError
from lavis.common.schema import MAX_COUNT, ranged


@dataclasses.dataclass
class RunConfig:
    task: str
    runner: Literal["runner_epoch", "runner_iter"] | str = "runner_epoch"
    imports: list[str] = dataclasses.field(default_factory=list)
    job_name: str | None = None  # default: the run YAML's file name
    output_dir: str | None = None  # default: runs/<job_name>
    seed: int = ranged(42, ge=0, le=2**32 - 1)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype of the training step
    deterministic: bool = False  # torch.use_deterministic_algorithms + fixed cuDNN choices

    # ---- schedule ----
    max_epoch: int = ranged(1, ge=1, le=MAX_COUNT)  # runner_epoch
    max_iters: int | None = ranged(None, ge=1, le=MAX_COUNT)  # runner_iter: total optimizer steps
    iters_per_inner_epoch: int | None = ranged(None, ge=1, le=MAX_COUNT)  # runner_iter: validation/checkpoint cadence
    batch_size_train: int = ranged(8, ge=1, le=MAX_COUNT)  # per rank
    batch_size_eval: int = ranged(8, ge=1, le=MAX_COUNT)  # per rank
    accum_grad_iters: int = ranged(1, ge=1, le=MAX_COUNT)
    max_grad_norm: float | None = ranged(None, gt=0)
    num_workers: int = ranged(2, ge=0, le=1024)
    # Batches of similar text length (lavis/runners/length_grouping.py): less padding, same data.
    # None: the task's default (on for instruction_tuning, off for stage 1, whose contrastive
    # loss wants random in-batch negatives).
    group_by_length: bool | None = None
    length_group_megabatch: int = ranged(50, ge=1, le=MAX_COUNT)  # global batches per shuffled mega-batch sorted by length
    length_group_loss_weights: bool = True  # each answer token weighs what it does in random batches
    # Lengths within this fraction of each other count as equal (their order stays random), so
    # answers that differ by a character or two - "...: yes." / "...: no." - still share batches.
    length_group_tolerance: float = ranged(0.25, ge=0)
    eval_sort_by_length: bool = True  # evaluation batches by prompt length; outputs keep data order
    train_splits: list[str] = dataclasses.field(default_factory=lambda: ["train"])
    valid_splits: list[str] = dataclasses.field(default_factory=list)
    test_splits: list[str] = dataclasses.field(default_factory=list)
    evaluate: bool = False  # only evaluate (evaluate.py sets this)

    # ---- optimizer and lr schedule ----
    lr_sched: str = "linear_warmup_cosine"
    init_lr: float = ranged(1e-4, ge=0)
    min_lr: float = ranged(0.0, ge=0)
    warmup_lr: float = ranged(0.0, ge=0)
    warmup_steps: int = ranged(0, ge=0, le=MAX_COUNT)
    lr_decay_rate: float = ranged(0.9, gt=0)  # linear_warmup_step
    weight_decay: float = ranged(0.05, ge=0)
    betas: tuple[float, float] = ranged((0.9, 0.999), ge=0, lt=1)
    lr_scales: dict[str, float] = ranged(default_factory=dict, ge=0)  # param-name prefix -> scale

    # ---- validation, checkpoints, resume ----
    val_every_n_epochs: int = ranged(1, ge=1, le=MAX_COUNT)
    best_metric: str = "agg_metrics"
    best_mode: Literal["max", "min"] | None = None  # None: the task's default
    save_every_n_iters: int | None = ranged(None, ge=1, le=MAX_COUNT)  # also checkpoint mid-epoch (resume point)
    keep_last: int = ranged(2, ge=1, le=MAX_COUNT)
    resume: str | None = None  # "auto" (newest in output_dir) or a checkpoint folder
    # A folder that holds a run is never reused silently: without run.resume a training run there
    # is refused, unless this deletes that run's checkpoints and metrics first (lavis/runners/run_folder.py).
    overwrite: bool = False
    test_checkpoint: Literal["best", "last"] = "best"
    # The final checkpoint (end of training, or a stop on a signal) is tried this many times, this
    # far apart, when the disk is full: time to free space before that training is lost.
    final_save_attempts: int = ranged(3, ge=1, le=1000)
    final_save_retry_wait_s: float = ranged(60.0, ge=0)
    max_bad_samples: int = ranged(100, ge=0)  # per epoch; past it the run stops
    # An evaluation image that cannot be read: "error" stops the evaluation naming the files;
    # "empty_answer" scores its question as an empty answer (counted, and wrong). Never dropped.
    unreadable_eval_images: Literal["error", "empty_answer"] = "error"

    # ---- frozen-encoder feature cache (lavis/datasets/feature_cache.py, docs/performance.md) ----
    # auto: cache every split whose image transform is fixed (evaluation; training without
    # augmentation); on: also train on eval-transform features, fail where impossible; off: never.
    feature_cache: Literal["auto", "on", "off"] = "auto"
    feature_cache_dir: str | None = None  # default: <output_dir>/feature_cache (share it across runs)
    feature_cache_dtype: Literal["fp16", "bf16"] = "fp16"

    # ---- logging and distributed ----
    log_freq: int = ranged(20, ge=1, le=MAX_COUNT)  # optimizer steps between reads of the losses
    tensorboard: bool = False
    find_unused_parameters: bool = False
    progress_bar: bool = True

    # ---- callbacks (lavis/runners/callbacks.py): [{name: early_stopping, patience: 3}, ...] ----
    callbacks: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def validate(self) -> None:
        from lavis.runners.callbacks import parse_callbacks

        if self.runner == "runner_iter" and not self.max_iters:
            raise ConfigError("runner_iter needs 'run.max_iters' (total optimizer steps)")
        if self.overwrite and self.resume:
            raise ConfigError(f"'run.overwrite' deletes the run that 'run.resume={self.resume}' would continue: "
                              "give one of them")
        parse_callbacks(self.callbacks)  # unknown names and keys fail here, at start
