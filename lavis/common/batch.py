"""Helpers on collated batches (dicts of tensors and lists) shared by runners and tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def move_to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {
        key: value.to(device, non_blocking=non_blocking) if isinstance(value, torch.Tensor) else value
        for key, value in batch.items()
    }


def pop_bookkeeping(batch: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``_``-prefixed runner keys (``_skipped``, ``_index``, ``_size``) from model inputs."""
    meta = {k: v for k, v in batch.items() if k.startswith("_")}
    inputs = {k: v for k, v in batch.items() if not k.startswith("_")}
    return inputs, meta


def batch_size_of(inputs: dict[str, Any], meta: dict[str, Any] | None = None) -> int:
    """Number of samples in a batch: ``_size`` if the collate set it, else the first field's length."""
    if meta and "_size" in meta:
        return int(meta["_size"])
    for value in inputs.values():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return int(value.shape[0])
        if isinstance(value, Sequence) and not isinstance(value, str):
            return len(value)
    return 0
