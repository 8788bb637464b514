"""Base class and registry for tasks: what a training step and an evaluation mean."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from lavis.common.batch import batch_size_of
from lavis.common.checkpoint import atomic_write_text
from lavis.common.registry import Registry
from lavis.datasets.builders.base_builder import BUILDERS
from lavis.models.base_model import MODELS, BaseModel

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TaskConfig:
    """Task keys live in the ``run`` section beside the runner's keys; the base task has none."""


class BaseTask:
    Config: ClassVar[type] = TaskConfig

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    # ---- building ------------------------------------------------------------------------
    def build_model(self, config: Any) -> BaseModel:
        """The model class builds itself, loading ``model.checkpoint`` when one is set."""
        return MODELS.get(config.model.arch).from_config(config.model)

    def build_datasets(self, config: Any) -> dict[str, dict[str, Dataset]]:
        """``{dataset name: {split: Dataset}}`` for every entry of the ``datasets`` section."""
        out: dict[str, dict[str, Dataset]] = {}
        for name, ds_cfg in config.datasets.items():
            out[name] = BUILDERS.get(name).from_config(ds_cfg, name).build()
        return out

    # ---- training ------------------------------------------------------------------------
    def train_step(self, model: torch.nn.Module, samples: dict[str, Any]) -> dict[str, torch.Tensor]:
        return model(samples)

    # ---- evaluation ----------------------------------------------------------------------
    # Runners call valid_step on each batch (rank-local), gather the records from all ranks,
    # drop the distributed sampler's padding duplicates by ``_index``, then after_evaluation.
    best_mode: ClassVar[str] = "min"  # validation loss: lower is better

    @torch.no_grad()
    def valid_step(self, model: torch.nn.Module, samples: dict[str, Any]) -> list[dict[str, Any]]:
        """Default validation: the batch loss, one record per sample (weighted mean later)."""
        loss = model(samples)["loss"].float().item()
        return [{"loss": loss} for _ in range(batch_size_of(samples))]

    def unreadable_record(self, fields: dict[str, Any]) -> dict[str, Any] | None:
        """The record of an item whose image could not be read, scored as an empty answer
        (``run.unreadable_eval_images: empty_answer``); ``fields`` are the item's other values.
        None: this task scores no answers (a validation loss), so the item is reported, not scored."""
        return None

    def after_evaluation(
        self, records: list[dict[str, Any]], split: str, epoch: int | str, output_dir: Path
    ) -> dict[str, float]:
        """Aggregate records into metrics; ``agg_metrics`` is what best-checkpoint picks by."""
        if not records:
            return {}
        loss = sum(r["loss"] for r in records) / len(records)
        return {"loss": loss, "agg_metrics": loss}


def write_eval_file(output_dir: Path, split: str, epoch: int | str, name: str, text: str) -> Path:
    """Write ``<output_dir>/<split>_<epoch>_<name>`` atomically (an evaluation's answers, metrics)."""
    path = output_dir / f"{split}_{epoch}_{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


TASKS: Registry[type[BaseTask]] = Registry("task", BaseTask)
register_task = TASKS.register
