"""The runner's keys of the ``run`` section (the task adds its own keys beside them)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from lavis.common.errors import ConfigError


@dataclasses.dataclass
class RunConfig:
    task: str
    runner: Literal["runner_epoch", "runner_iter"] | str = "runner_epoch"
    imports: list[str] = dataclasses.field(default_factory=list)
    job_name: str | None = None  # default: the run YAML's file name
    output_dir: str | None = None  # default: runs/<job_name>
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype of the training step
    deterministic: bool = False  # torch.use_deterministic_algorithms + fixed cuDNN choices

    # ---- schedule ----
    max_epoch: int = 1  # runner_epoch
    max_iters: int | None = None  # runner_iter: total optimizer steps
    iters_per_inner_epoch: int | None = None  # runner_iter: validation/checkpoint cadence
    batch_size_train: int = 8  # per rank
    batch_size_eval: int = 8  # per rank
    accum_grad_iters: int = 1
    max_grad_norm: float | None = None
    num_workers: int = 2
    # Batches of similar text length (lavis/runners/length_grouping.py): less padding, same data.
    # None: the task's default (on for instruction_tuning, off for stage 1, whose contrastive
    # loss wants random in-batch negatives).
    group_by_length: bool | None = None
    length_group_megabatch: int = 50  # global batches per shuffled mega-batch sorted by length
    length_group_loss_weights: bool = True  # each answer token weighs what it does in random batches
    # Lengths within this fraction of each other count as equal (their order stays random), so
    # answers that differ by a character or two - "...: yes." / "...: no." - still share batches.
    length_group_tolerance: float = 0.25
    eval_sort_by_length: bool = True  # evaluation batches by prompt length; outputs keep data order
    train_splits: list[str] = dataclasses.field(default_factory=lambda: ["train"])
    valid_splits: list[str] = dataclasses.field(default_factory=list)
    test_splits: list[str] = dataclasses.field(default_factory=list)
    evaluate: bool = False  # only evaluate (evaluate.py sets this)

    # ---- optimizer and lr schedule ----
    lr_sched: str = "linear_warmup_cosine"
    init_lr: float = 1e-4
    min_lr: float = 0.0
    warmup_lr: float = 0.0
    warmup_steps: int = 0
    lr_decay_rate: float = 0.9  # linear_warmup_step
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    lr_scales: dict[str, float] = dataclasses.field(default_factory=dict)  # param-name prefix -> scale

    # ---- validation, checkpoints, resume ----
    val_every_n_epochs: int = 1
    best_metric: str = "agg_metrics"
    best_mode: Literal["max", "min"] | None = None  # None: the task's default
    save_every_n_iters: int | None = None  # also checkpoint mid-epoch (resume point)
    keep_last: int = 2
    resume: str | None = None  # "auto" (newest in output_dir) or a checkpoint folder
    test_checkpoint: Literal["best", "last"] = "best"
    # The final checkpoint (end of training, or a stop on a signal) is tried this many times, this
    # far apart, when the disk is full: time to free space before that training is lost.
    final_save_attempts: int = 3
    final_save_retry_wait_s: float = 60.0
    max_bad_samples: int = 100  # per epoch; past it the run stops
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
    log_freq: int = 20
    tensorboard: bool = False
    find_unused_parameters: bool = False
    progress_bar: bool = True

    def validate(self) -> None:
        if self.runner == "runner_iter" and not self.max_iters:
            raise ConfigError("runner_iter needs 'run.max_iters' (total optimizer steps)")
        for key in ("batch_size_train", "batch_size_eval", "accum_grad_iters", "max_epoch", "keep_last",
                    "final_save_attempts", "length_group_megabatch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"'run.{key}' must be >= 1, got {getattr(self, key)}")
        if self.length_group_tolerance < 0:
            raise ConfigError(f"'run.length_group_tolerance' must be >= 0, got {self.length_group_tolerance}")
        if self.num_workers < 0:
            raise ConfigError(f"'run.num_workers' must be >= 0, got {self.num_workers}")
