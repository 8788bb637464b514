"""Where the framework finds its YAML configs and where a run writes; outputs never go inside the package."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_ROOT.parent
# An installed wheel holds configs/ as the data package lavis.configs (setup.py's package_dir);
# a checkout (and an editable install) reads the repository's configs/ beside the package.
PACKAGED_CONFIGS = PACKAGE_ROOT / "configs"


def config_root() -> Path:
    """The ``configs/`` tree: ``LAVIS_CONFIG_ROOT`` if set, else the wheel's packaged copy, else
    the repository's."""
    override = os.environ.get("LAVIS_CONFIG_ROOT")
    if override:
        return Path(override)
    return PACKAGED_CONFIGS if PACKAGED_CONFIGS.is_dir() else REPO_ROOT / "configs"


def user_config_file(path: str | os.PathLike) -> Path:
    """A config file a user names on a command line: as given when it exists; a relative
    ``configs/...`` path that does not exist here (an installed package run from any folder)
    is the packaged file of that name."""
    given = Path(path)
    if given.exists() or given.is_absolute() or given.parts[:1] != ("configs",):
        return given
    packaged = config_root().joinpath(*given.parts[1:])
    return packaged if packaged.exists() else given


def config_path(relative: str | os.PathLike) -> Path:
    """Resolve a path like ``models/blip2/pretrain.yaml`` against ``configs/``; absolute paths pass."""
    path = Path(relative)
    if path.is_absolute():
        return path
    full = config_root() / path
    if not full.exists():
        raise FileNotFoundError(f"config file '{relative}' not found under {config_root()}")
    return full


def run_output_dir(cfg: Any) -> Path:
    """The run folder: ``run.output_dir``, else ``runs/<run.job_name or the run YAML's stem>``."""
    job = cfg.run.job_name or (Path(cfg.source).stem if cfg.source else "job")
    return Path(cfg.run.output_dir or Path("runs") / job)


def feature_cache_root(run: Any, output_dir: str | os.PathLike) -> Path:
    """The feature-cache folder a run reads and fills: ``run.feature_cache_dir``, else
    ``<output_dir>/feature_cache``."""
    return Path(run.feature_cache_dir or Path(output_dir) / "feature_cache")
