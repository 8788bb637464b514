"""Build the frozen-encoder feature cache of a run ahead of time.

    python -m lavis.cli.build_feature_cache --cfg-path RUN.yaml [--options ...]
    torchrun --nproc_per_node=8 -m lavis.cli.build_feature_cache --cfg-path RUN.yaml

Builds exactly what the run would read (``run.feature_cache``, ``run.feature_cache_dir``; ``off``
is treated as ``auto`` since a build was asked for): each rank encodes its share of the missing
images, rank 0 merges. The run then finds everything cached and starts training at once.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Sequence
from typing import Any

from lavis.common.errors import LavisError

logger = logging.getLogger("lavis.feature_cache")


def build(cfg: Any) -> dict[str, dict[str, str]]:
    """Build the caches ``cfg`` would use; returns ``{dataset: {split: store folder}}``."""
    import torch

    from lavis.common.dist import init_distributed, resolve_device
    from lavis.common.logger import setup_logging
    from lavis.common.output_lock import lock_output_for_job
    from lavis.common.paths import feature_cache_root, run_output_dir
    from lavis.common.seeding import seed_everything
    from lavis.datasets.feature_cache import CachedFeatures, apply_feature_cache
    from lavis.runners.assemble import build_parts

    device = resolve_device(cfg.run.device, "run.device")
    init_distributed(device.type)
    setup_logging()
    seed_everything(cfg.run.seed)
    if cfg.run.feature_cache == "off":
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, feature_cache="auto"))
    output_dir = run_output_dir(cfg)
    # One builder per cache folder (taken before the slow model build, so a second one fails at once).
    with lock_output_for_job(feature_cache_root(cfg.run, output_dir), "feature-cache build"):
        _, model, datasets = build_parts(cfg)
        model = model.to(device)
        with torch.no_grad():
            cached = apply_feature_cache(datasets, model, cfg, output_dir, device)
    return {
        name: {split: str(ds.store.dir) for split, ds in splits.items() if isinstance(ds, CachedFeatures)}
        for name, splits in cached.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    from lavis.cli import build_parser, load
    from lavis.common.dist import destroy_distributed, is_main_process

    parser = build_parser("Build the frozen-encoder feature cache of a run config.", None)
    args = parser.parse_args(argv)
    try:
        cfg = load(args)
        if args.print_config:
            print(cfg.to_yaml())
            return 0
        stores = build(cfg)
        main_rank = is_main_process()
    except LavisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        destroy_distributed()
    if main_rank:
        if not any(stores.values()):
            print("nothing to cache: no split the run uses has a fixed image transform (see the log)")
        for name, splits in stores.items():
            for split, folder in splits.items():
                print(f"{name}/{split}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
