"""From a run YAML to the parts of a run: the registries a config is checked against, the
loaded config, and (task, model, datasets). Entry points, the doctor and the feature-cache tool
all assemble a run through here, so they read a config exactly as training does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lavis.common.config import Config, ConfigRegistries, load_config


def registries() -> ConfigRegistries:
    import lavis.processors  # noqa: F401  (registers the processors; the imports below fill the rest)
    from lavis.datasets import BUILDERS
    from lavis.models import MODELS
    from lavis.runners.base_runner import RUNNERS
    from lavis.tasks import TASKS

    return ConfigRegistries(models=MODELS, builders=BUILDERS, tasks=TASKS, runners=RUNNERS)


def load_run_config(cfg_path: str, options: Sequence[str] = (), imports: Sequence[str] = ()) -> Config:
    """The validated config of ``cfg_path`` with ``options`` (``a.b=c``) overlaid last."""
    from lavis.runners.run_config import RunConfig

    return load_config(cfg_path, registries(), list(options), list(imports), run_schema=RunConfig)


def build_parts(cfg: Config) -> tuple[Any, Any, dict[str, dict[str, Any]]]:
    """(task, model, {dataset: {split: Dataset}}) as the config describes them."""
    from lavis.tasks import TASKS

    task = TASKS.get(cfg.run.task)(cfg.task)
    return task, task.build_model(cfg), task.build_datasets(cfg)
