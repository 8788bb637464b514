"""AdamW parameter groups and per-iteration learning-rate schedulers.

Schedulers set ``group["lr"] = lr * group["lr_scale"]`` so a group can train slower or faster
(e.g. a pretrained Q-Former vs a fresh projection) under one schedule. They are stepped once per
optimizer step, so warmup may span several epochs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from lavis.common.registry import Registry

_NO_DECAY_MARKERS = ("bias", "norm", "ln_")


def _no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norms and scalars/vectors (ndim < 2) are not decayed."""
    lowered = name.lower()
    return param.ndim < 2 or any(marker in lowered for marker in _NO_DECAY_MARKERS)


def _lr_scale_for(name: str, lr_scales: Mapping[str, float]) -> float:
    """The scale of the longest matching name prefix (``{"Qformer.": 0.1}``), else 1."""
    best, scale = -1, 1.0
    for prefix, value in lr_scales.items():
        if name.startswith(prefix) and len(prefix) > best:
            best, scale = len(prefix), float(value)
    return scale


def param_groups(
    named_params: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    lr_scales: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Group trainable parameters by (decay or not, lr_scale); deterministic order."""
    lr_scales = lr_scales or {}
    groups: dict[tuple[bool, float], dict[str, Any]] = {}
    for name, param in named_params:
        if not param.requires_grad:
            continue
        no_decay = _no_weight_decay(name, param)
        scale = _lr_scale_for(name, lr_scales)
        key = (no_decay, scale)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr_scale": scale,
            }
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def fused_adamw_supported(device: torch.device) -> bool:
    """Whether torch has a fused AdamW kernel for ``device`` (CUDA; CPU since torch 2.4). Without
    it, CPU AdamW takes the per-tensor Python loop: 40% of a tiny model's step."""
    try:
        torch.optim.AdamW([torch.zeros(1, device=device, requires_grad=True)], fused=True)
    except (RuntimeError, ValueError):
        return False
    return True


def build_adamw(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    lr_scales: Mapping[str, float] | None = None,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; fused kernels wherever torch has them, unless told otherwise."""
    groups = param_groups(model.named_parameters(), weight_decay, lr_scales)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if fused is None:
        fused = fused_adamw_supported(groups[0]["params"][0].device)
    for group in groups:
        group.pop("names")
    kwargs: dict[str, Any] = {"lr": lr, "betas": betas}
    if fused:
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, **kwargs)


class LRScheduler:
    """Per-iteration schedule: ``step()`` after each optimizer step sets every group's lr."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        init_lr: float,
        min_lr: float = 0.0,
        warmup_lr: float = 0.0,
        warmup_steps: int = 0,
        total_steps: int,
        steps_per_epoch: int,
        decay_rate: float = 0.9,
    ) -> None:
        self.optimizer = optimizer
        self.init_lr = init_lr
        self.min_lr = min_lr
        self.warmup_lr = warmup_lr
        self.warmup_steps = max(0, warmup_steps)
        self.total_steps = max(1, total_steps)
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.decay_rate = decay_rate
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_lr + (self.init_lr - self.warmup_lr) * step / self.warmup_steps
        return self.after_warmup(step)

    def after_warmup(self, step: int) -> float:
        raise NotImplementedError

    def _apply(self) -> None:
        lr = self.lr_at(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_lr(self) -> float:
        return self.lr_at(self.step_count)

    def state_dict(self) -> dict[str, int]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.step_count = int(state["step_count"])
        self._apply()


LR_SCHEDULERS: Registry[type[LRScheduler]] = Registry("lr_scheduler", LRScheduler)
register_lr_scheduler = LR_SCHEDULERS.register


@register_lr_scheduler("linear_warmup_cosine")
class LinearWarmupCosine(LRScheduler):
    """Linear warmup, then cosine from init_lr to min_lr at the last step."""

    def after_warmup(self, step: int) -> float:
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + (self.init_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@register_lr_scheduler("linear_warmup_step")
class LinearWarmupStep(LRScheduler):
    """Linear warmup, then ``init_lr * decay_rate ** epoch`` (floored at min_lr)."""

    def after_warmup(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        return max(self.min_lr, self.init_lr * self.decay_rate**epoch)


@register_lr_scheduler("constant")
class Constant(LRScheduler):
    """Linear warmup (if any), then init_lr."""

    def after_warmup(self, step: int) -> float:
        return self.init_lr
