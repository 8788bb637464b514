"""Does the optimised step compute what the eager step computes? One step's loss and the
gradients of every trainable parameter, from the same weights and batch, compared.

Dropout is switched off for the check: eager and compiled code draw their dropout masks from
different random streams, so with dropout on, equal code would still give different numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

# fp32 (CPU tests): the same operations in the same order up to fusion; bf16 autocast (GPU):
# a fused kernel rounds intermediate results differently, ~0.4% per bf16 operation.
TOLERANCE = {"float32": {"loss_rel": 1e-5, "grad_rel_l2": 1e-4}, "bfloat16": {"loss_rel": 1e-2, "grad_rel_l2": 5e-2}}


@contextlib.contextmanager
def dropout_off(model: nn.Module) -> Iterator[None]:
    """Every ``nn.Dropout`` and float ``dropout`` attribute (the Q-Former's SDPA dropout) at 0."""
    saved: list[tuple[Any, str, float]] = []
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            saved.append((module, "p", module.p))
        elif isinstance(getattr(module, "dropout", None), float):
            saved.append((module, "dropout", module.dropout))
    for module, name, _ in saved:
        setattr(module, name, 0.0)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def loss_and_grads(model: nn.Module, forward: Callable[[], torch.Tensor], seed: int = 0) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss of ``forward()`` and the gradients of the trainable parameters (cloned, then cleared)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # stage 1 samples its hard negatives: the same draws on both sides
    with dropout_off(model):
        loss = forward()
        loss.backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def compare(reference: tuple[float, dict[str, torch.Tensor]], other: tuple[float, dict[str, torch.Tensor]],
            precision: str) -> dict[str, Any]:
    """Relative loss difference and relative L2 error of all gradients together, with the verdict."""
    (loss_a, grads_a), (loss_b, grads_b) = reference, other
    if set(grads_a) != set(grads_b):
        raise AssertionError(f"different parameters got gradients: {sorted(set(grads_a) ^ set(grads_b))[:5]}")
    diff = sum(float((grads_a[n] - grads_b[n]).square().sum()) for n in grads_a) ** 0.5
    norm = sum(float(g.square().sum()) for g in grads_a.values()) ** 0.5
    tolerance = TOLERANCE[precision]
    out = {"loss_eager": loss_a, "loss_optimised": loss_b, "loss_rel": abs(loss_a - loss_b) / max(abs(loss_a), 1e-12),
           "grad_rel_l2": diff / max(norm, 1e-12), "parameters": len(grads_a), "tolerance": tolerance}
    out["equal"] = out["loss_rel"] <= tolerance["loss_rel"] and out["grad_rel_l2"] <= tolerance["grad_rel_l2"]
    return out
