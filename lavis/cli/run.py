"""What ``train.py``, ``train_blip2qformer.py`` and ``evaluate.py`` share: one code path.

Works the same under ``python`` and ``torchrun --nproc_per_node=N`` (and SLURM): the process
group is joined only when several processes were launched.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Sequence
from typing import Any

from lavis.common.config import Config
from lavis.common.dist import destroy_distributed, init_distributed, read_env
from lavis.common.errors import LavisError, error_text
from lavis.common.logger import setup_logging
from lavis.common.seeding import seed_everything
from lavis.runners.assemble import build_parts, load_run_config
from lavis.runners.stop_signals import EXIT_INTERRUPTED, EXIT_STOPPED, TrainingStopped

logger = logging.getLogger("lavis")

DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)


def build_parser(description: str, default_cfg: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--cfg-path", default=default_cfg, required=default_cfg is None, help="run YAML (model, datasets, run)"
    )
    parser.add_argument(
        "--options", nargs="+", default=[], metavar="KEY=VALUE",
        help="override config keys, e.g. run.init_lr=1e-5 model.vision.precision=bf16",
    )
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="import a module that registers your own components (repeatable)",
    )
    parser.add_argument("--resume", default=None, help="checkpoint folder to resume from, or 'auto'")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in a run folder that holds a run: deletes its checkpoints and metrics first")
    parser.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    return parser


def load(args: argparse.Namespace, extra: Sequence[str] = ()) -> Config:
    options = list(args.options) + list(extra)
    if getattr(args, "resume", None):
        options.append(f"run.resume={args.resume}")
    if getattr(args, "overwrite", False):
        options.append("run.overwrite=true")
    return load_run_config(args.cfg_path, options, args.imports)


def run(cfg: Config, evaluate_only: bool = False) -> dict[str, Any]:
    from lavis.common.dist import resolve_device
    from lavis.common.output_lock import lock_output_for_job
    from lavis.common.paths import run_output_dir
    from lavis.runners import RUNNERS

    init_distributed(resolve_device(cfg.run.device, "run.device").type)  # run.device=cuda without a GPU fails here
    try:
        setup_logging()
        evaluating = evaluate_only or cfg.run.evaluate
        # The run folder has one writer: a second run pointed at it is refused before any work.
        with lock_output_for_job(run_output_dir(cfg), "evaluation" if evaluating else "training run"):
            seed_everything(cfg.run.seed)
            task, model, datasets = build_parts(cfg)
            runner = RUNNERS.get(cfg.run.runner)(cfg, task, model, datasets)
            if evaluating:
                return runner.evaluate_only()
            with runner.stop_signals:  # SIGTERM / SIGUSR1 / Ctrl-C: finish the step, checkpoint, exit 75
                return runner.train()
    finally:
        destroy_distributed()


def main(description: str, default_cfg: str | None = None, evaluate_only: bool = False,
         argv: Sequence[str] | None = None) -> int:
    parser = build_parser(description, default_cfg)
    if evaluate_only:
        parser.add_argument("--checkpoint", default=None, help="weights to evaluate (ours or a LAVIS .pth)")
    args = parser.parse_args(argv)
    extra = []
    if evaluate_only:
        extra.append("run.evaluate=true")
        if args.checkpoint:
            extra.append(f"model.checkpoint={args.checkpoint}")
    main_rank = read_env().rank == 0
    try:
        cfg = load(args, extra)
        if args.print_config:
            print(cfg.to_yaml())
            return 0
        run(cfg, evaluate_only)
    except LavisError as err:
        print(f"error: {error_text(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in DISK_ERRORS:
            raise
        # the disk filled (or went read-only) under a write that has no fallback: say which, no traceback
        where = f" writing {err.filename}" if err.filename else ""
        print(f"error: {err.strerror}{where}: free space, or set run.output_dir elsewhere", file=sys.stderr)
        return 2
    except TrainingStopped as stop:
        if main_rank:
            print(f"stopped: {stop}", file=sys.stderr)
        return EXIT_STOPPED
    except KeyboardInterrupt:
        if main_rank:
            print("interrupted: stopped at once, without a checkpoint (in training, a single Ctrl-C finishes "
                  "the step and writes one)", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
