"""What the doctor's checks share: the validated config, the report, and what they learn for the
later checks (downloads to make room for, data set sizes, the model built on the meta device)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lavis.apps.doctor.report import Report


@dataclasses.dataclass
class Download:
    what: str
    folder: Path  # the cache it would land in
    bytes: int | None


@dataclasses.dataclass
class Context:
    cfg: Any  # lavis.common.config.Config
    report: Report
    gpu_memory_gib: float | None = None  # simulated card size (--gpu-memory / LAVIS_DOCTOR_GPU_MEMORY)
    gpus: int | None = None  # simulated card count
    downloads: list[Download] = dataclasses.field(default_factory=list)
    # data set -> split -> (rows, distinct images, fixed image transform): feeds the feature-cache size
    data_sizes: dict[str, dict[str, tuple[int, int, bool]]] = dataclasses.field(default_factory=dict)
    meta_model: Any = None  # the model built on the meta device (exact parameter counts, no memory)
    meta_error: str | None = None
    current_record: dict[str, Any] | None = None  # provenance of the configured model

    @property
    def model_cfg(self) -> Any:
        return self.cfg.model

    @property
    def training(self) -> bool:
        return not self.cfg.run.evaluate
