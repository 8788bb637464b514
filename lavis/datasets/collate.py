"""Batch a list of items (dicts or ``SkippedSample``) into one dict for the model.

Rules, key by key (the union of the items' keys, first-seen order):

- tensors of one shape are stacked;
- 1-D integer (or bool) tensors are right-padded with 0 to the longest and always get a matching
  ``<key>_mask`` (int64, 1 = real position), so a key's output form never depends on the batch;
  keys that already end in ``_mask`` are padded but get no mask of their own;
- other tensors of different shapes, or a key that is a tensor in some items and missing or not a
  tensor in others, raise ``DataError`` naming the key: the processor must fix the size;
- everything else (str, int, None, lists...) stays a Python list; an item that lacks the key
  contributes ``None``.

Bookkeeping: ``_skipped`` (always present) lists the dropped items as ``"path: reason"`` and
``_skipped_samples`` the ``SkippedSample``s themselves (evaluation accounts for their questions);
``_size`` is the number of items kept. A batch with every item skipped is just
``{"_skipped": [...], "_skipped_samples": [...], "_size": 0}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lavis.common.errors import DataError
from lavis.datasets.bad_data import SkippedSample


def _is_integer(tensor: torch.Tensor) -> bool:
    return not (tensor.is_floating_point() or tensor.is_complex())


def _pad_1d(key: str, values: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    longest = max(v.shape[0] for v in values)
    padded = values[0].new_zeros((len(values), longest))
    mask = torch.zeros((len(values), longest), dtype=torch.long)
    for row, value in enumerate(values):
        padded[row, : value.shape[0]] = value
        mask[row, : value.shape[0]] = 1
    out = {key: padded}
    if not key.endswith("_mask"):
        out[f"{key}_mask"] = mask
    return out


def _collate_tensors(key: str, values: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    if all(v.ndim == 1 and _is_integer(v) for v in values):
        return _pad_1d(key, values)
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) == 1:
        return {key: torch.stack(values)}
    raise DataError(
        f"collate: key '{key}' has tensors of different shapes {sorted(shapes)}; only 1-D integer "
        "tensors are padded - resize in the processor (e.g. image_size) so items match"
    )


def collate(items: Sequence[dict[str, Any] | SkippedSample]) -> dict[str, Any]:
    """Drop skipped items (reported in ``_skipped``), stack/pad tensors, keep the rest as lists."""
    kept: list[dict[str, Any]] = []
    skipped: list[SkippedSample] = []
    for item in items:
        if isinstance(item, SkippedSample):
            skipped.append(item)
        elif isinstance(item, dict):
            kept.append(item)
        else:
            raise TypeError(f"collate: expected dict or SkippedSample items, got {type(item).__name__}")
    bookkeeping = {"_skipped": [str(item) for item in skipped], "_skipped_samples": skipped}
    if not kept:
        return {**bookkeeping, "_size": 0}

    keys = list(dict.fromkeys(key for item in kept for key in item))
    batch: dict[str, Any] = {}
    for key in keys:
        values = [item.get(key) for item in kept]
        tensors = [isinstance(v, torch.Tensor) for v in values]
        if all(tensors):
            batch.update(_collate_tensors(key, values))
        elif any(tensors):
            kinds = sorted({type(v).__name__ for v in values})
            raise DataError(f"collate: key '{key}' is a tensor in some items but not in others ({kinds})")
        else:
            batch[key] = values
    batch.update(bookkeeping)
    batch["_size"] = len(kept)
    return batch
