"""A stopping rule as a callback: end training when the validation metric stops improving.

``run.callbacks: [{name: early_stopping, patience: 3}]`` ends the run (checkpoint, test splits,
summary; exit 0) after ``patience`` validations in a row without an improvement of more than
``min_delta`` in ``run.best_metric`` (the direction is ``run.best_mode``, else the task's). Its
count is saved in checkpoints, so a resumed run stops where an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from lavis.common.schema import MAX_COUNT, ranged
from lavis.runners.callbacks import Callback, register_callback

if TYPE_CHECKING:
    from lavis.runners.base_runner import RunnerBase


@dataclasses.dataclass
class EarlyStoppingConfig:
    patience: int = ranged(3, ge=1, le=MAX_COUNT)  # validations without improvement before stopping
    min_delta: float = ranged(0.0, ge=0)  # an improvement must exceed this


@register_callback("early_stopping")
class EarlyStopping(Callback):
    Config = EarlyStoppingConfig

    def __init__(self, cfg: EarlyStoppingConfig | None = None) -> None:
        super().__init__(cfg)
        self.best: float | None = None
        self.waited = 0

    def on_validation_end(self, runner: RunnerBase, results: dict[str, dict[str, float]]) -> None:
        key = runner.run.best_metric
        values = [metrics[key] for metrics in results.values() if key in metrics]
        if not values:
            return  # Validation itself reports a best_metric that is missing
        value = sum(values) / len(values)
        sign = 1.0 if runner.best_mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > self.cfg.min_delta:
            self.best, self.waited = value, 0
            return
        self.waited += 1
        if self.waited >= self.cfg.patience:
            runner.request_stop(f"early_stopping: run.best_metric {key} has not improved on {self.best:.5g} by more "
                                f"than {self.cfg.min_delta:g} for {self.waited} validations")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "waited": self.waited} if self.best is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.waited = state.get("best"), int(state.get("waited", 0))
