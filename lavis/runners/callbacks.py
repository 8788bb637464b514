"""The runner's callback surface: behaviour added to a training run without subclassing the runner.

A callback is a class with a few hooks, registered by name like every component and configured
in the run YAML (``run.callbacks: [{name: early_stopping, patience: 3}]``; the keys beside
``name`` are checked against the class's ``Config`` dataclass). A user module registers its own
(``--import my_lab.callbacks`` or ``run.imports``). The runner's own parts - the training log,
validation with best tracking, checkpoints and stop requests - are callbacks too, so a user's
callback can do anything they do; the user's run first at every hook (an EMA updated at a step's
end is then what that step's checkpoint saves).

Hooks run on every rank. ``on_step_end`` runs after every optimizer step, inside the steady
state: read no tensor on the host there (``.item()``, ``float()``, printing), or every step waits
for the device; read values in ``on_log``, which receives them already on the host.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from lavis.common.errors import ConfigError, RegistryError
from lavis.common.registry import Registry
from lavis.common.schema import from_mapping

if TYPE_CHECKING:
    from pathlib import Path

    from lavis.runners.base_runner import RunnerBase

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class NoOptions:
    """A callback without keys of its own."""


class Callback:
    """Override the hooks you need; ``state_dict``/``load_state_dict`` make a stateful callback
    resume exactly (its state is saved in every checkpoint under its name)."""

    Config: ClassVar[type] = NoOptions
    name: str = ""  # its registry name (set when built from the run config)

    def __init__(self, cfg: Any = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()

    def on_train_start(self, runner: RunnerBase) -> None:
        """After the optimizer is built and a checkpoint (if any) restored, before the first batch."""

    def on_step_end(self, runner: RunnerBase) -> None:
        """After every optimizer step (``runner.global_step`` counts it). No host reads here."""

    def on_log(self, runner: RunnerBase, values: dict[str, float]) -> None:
        """Every ``run.log_freq`` steps: the mean losses since the last log, lr, steps/s (host floats)."""

    def on_epoch_end(self, runner: RunnerBase) -> None:
        """At each validation and checkpoint point: an epoch's end (``runner_iter``: an inner epoch's)."""

    def on_validation_end(self, runner: RunnerBase, results: dict[str, dict[str, float]]) -> None:
        """After a validation: ``{split label: metrics}``, identical on every rank."""

    def on_checkpoint(self, runner: RunnerBase, path: Path) -> None:
        """After a step checkpoint was written to ``path`` (rank 0 only writes; every rank is told)."""

    def on_train_end(self, runner: RunnerBase, results: dict[str, Any]) -> None:
        """After training and the test splits: ``results`` are the test metrics."""

    def state_dict(self) -> dict[str, Any]:
        """What this callback needs to continue exactly after a resume (tensors allowed)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


CALLBACKS: Registry[type[Callback]] = Registry("callback", Callback)
register_callback = CALLBACKS.register


def parse_callbacks(specs: Sequence[Any]) -> list[tuple[type[Callback], Any]]:
    """``run.callbacks`` -> (class, validated options) per entry; errors name ``run.callbacks[i]``."""
    parsed, names = [], set()
    for i, spec in enumerate(specs):
        where = f"run.callbacks[{i}]"
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise ConfigError(f"{where}: expected a mapping with a 'name' (a registered callback), got {spec!r}")
        name = spec["name"]
        try:
            cls = CALLBACKS.get(name)
        except RegistryError as err:
            raise ConfigError(f"{where}.name: {err} (a module of yours registers more: --import MODULE)") from None
        if name in names:
            raise ConfigError(f"{where}: callback '{name}' is listed twice (its state is saved under its name)")
        names.add(name)
        parsed.append((cls, from_mapping(cls.Config, {k: v for k, v in spec.items() if k != "name"}, where)))
    return parsed


def build_callbacks(specs: Sequence[Any]) -> list[Callback]:
    callbacks = []
    for (cls, cfg), spec in zip(parse_callbacks(specs), specs):
        callback = cls(cfg)
        callback.name = spec["name"]
        callbacks.append(callback)
    return callbacks


class CallbackList:
    """Calls a hook on every callback in order; gathers and restores their states by name."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def __iter__(self):
        return iter(self.callbacks)

    def on_train_start(self, runner: RunnerBase) -> None:
        for callback in self.callbacks:
            callback.on_train_start(runner)

    def on_step_end(self, runner: RunnerBase) -> None:
        for callback in self.callbacks:
            callback.on_step_end(runner)

    def on_log(self, runner: RunnerBase, values: dict[str, float]) -> None:
        for callback in self.callbacks:
            callback.on_log(runner, values)

    def on_epoch_end(self, runner: RunnerBase) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(runner)

    def on_validation_end(self, runner: RunnerBase, results: dict[str, dict[str, float]]) -> None:
        for callback in self.callbacks:
            callback.on_validation_end(runner, results)

    def on_checkpoint(self, runner: RunnerBase, path: Path) -> None:
        for callback in self.callbacks:
            callback.on_checkpoint(runner, path)

    def on_train_end(self, runner: RunnerBase, results: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_train_end(runner, results)

    def state_dict(self) -> dict[str, dict[str, Any]]:
        states = {callback.name: callback.state_dict() for callback in self.callbacks}
        return {name: state for name, state in states.items() if state}

    def load_state_dict(self, states: Mapping[str, Any], source: str) -> None:
        mine = {callback.name: callback for callback in self.callbacks}
        for name, state in states.items():
            if name in mine:
                mine[name].load_state_dict(state)
            else:
                logger.warning("resume: %s holds the state of callback '%s', which this run does not use", source, name)
        for name, callback in mine.items():
            if name not in states and callback.state_dict():
                logger.warning("resume: %s holds no state of callback '%s': it starts afresh", source, name)
