"""One training step, free of host synchronisation: forward and backward of a micro-batch, and at
an accumulation boundary the optimizer step (clipping, AMP scaling, scheduler).

Nothing here reads a tensor on the host: the losses and the gradient norm are summed on the
device (:class:`DeviceMeans`) and read once every ``run.log_freq`` steps by the training log, so
the host can queue the next step while the device still runs this one. ``tests/runners/
test_host_syncs.py`` holds it to that with :func:`lavis.runners.sync_guard.count_host_syncs`.

This is the place for ``torch.compile`` or CUDA graphs: :meth:`TrainStep.forward` is the whole
model-dependent computation of a micro-batch (compile it, e.g. ``step.forward =
torch.compile(step.forward)``), and :meth:`TrainStep.optimizer_step` the update; the runner
calls only these two (``RunnerBase.micro_step``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel


class DeviceMeans:
    """Running sums of scalar tensors, kept where they are computed; read on the host on demand."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().float()
        if key in self.sums:
            self.sums[key].add_(value)
        else:
            self.sums[key] = value.clone()
        self.counts[key] = self.counts.get(key, 0) + 1

    def read(self) -> dict[str, float]:
        """The means since the last read (one host transfer for all keys), then start over."""
        if not self.sums:
            return {}
        keys = list(self.sums)
        values = torch.stack([self.sums[k] for k in keys]).tolist()  # the one host read
        means = {k: v / self.counts[k] for k, v in zip(keys, values)}
        self.sums, self.counts = {}, {}
        return means

    def __bool__(self) -> bool:
        return bool(self.counts)


class TrainStep:
    """The model, task and optimizer of a run, stepped one micro-batch at a time."""

    def __init__(self, model: torch.nn.Module, wrapped: torch.nn.Module, task: Any, optimizer: torch.optim.Optimizer,
                 scheduler: Any, scaler: torch.amp.GradScaler, amp_dtype: torch.dtype | None,
                 max_grad_norm: float | None) -> None:
        self.model, self.wrapped, self.task = model, wrapped, task
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.amp_dtype, self.max_grad_norm = amp_dtype, max_grad_norm
        # The optimizer holds exactly these; taken from the unwrapped model, not DDP's wrapper.
        self.trainable = [p for _, p in model.trainable_named_parameters()]
        self.means = DeviceMeans()

    def forward(self, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The task's losses for a batch already on the device (``loss`` plus components)."""
        with self.model.autocast(self.amp_dtype):
            return self.task.train_step(self.wrapped, inputs)

    def forward_backward(self, inputs: dict[str, Any], scale: float, sync_grads: bool, count: bool) -> None:
        """Backpropagate ``loss * scale`` (accumulation, batch weights); ``sync_grads`` False skips
        DDP's gradient all-reduce (a micro-batch inside an accumulation); ``count`` adds its
        losses to the logged means (not for a zero-weight replay)."""
        no_sync = isinstance(self.wrapped, DistributedDataParallel) and not sync_grads
        with self.wrapped.no_sync() if no_sync else contextlib.nullcontext():
            losses = self.forward(inputs)
            self.scaler.scale(losses["loss"] * scale).backward()
        if count:
            for key, value in losses.items():
                if isinstance(value, torch.Tensor) and value.ndim == 0:
                    self.means.add(key, value)

    def has_gradients(self) -> bool:
        return any(p.grad is not None for p in self.trainable)

    def optimizer_step(self) -> None:
        """Clip (logging the norm before clipping), step, zero the gradients, advance the schedule."""
        if self.max_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.max_grad_norm)
            self.means.add("grad_norm", norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
