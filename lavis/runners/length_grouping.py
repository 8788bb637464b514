"""Batches of similar text length: each batch is padded to its own longest sequence, so grouping
items of similar length removes most padding (stage-2 instructions run from one word to 150).

Training (``run.group_by_length``): the epoch's seeded permutation is cut into mega-batches of
``megabatch`` global batches; each mega-batch is sorted by length, cut into global batches
(per-rank batch x ranks), and the batches of the whole epoch are shuffled. The longest batch
goes first, so a run that does not fit in memory fails at its first step, not hours later.
Everything depends on (seed, epoch) only: resume, worker count and the distributed sampler's
"global batch k = the k-th batch of every rank" layout are unchanged.

The loss stays what random batches optimise. A batch's loss is the mean over its answer tokens:
in a random batch every token weighs about 1 / (average tokens per batch); in a batch of short
answers each token would weigh far more. So each grouped batch's loss is multiplied by its share
of answer text (its answer characters over the epoch's mean per batch), which gives every answer
token the weight it has with random batches (``run.length_group_loss_weights``; measured in
benchmarks/grouping_loss.py: without the weights the held-out loss ends measurably higher).

Evaluation (``run.eval_sort_by_length``): questions in descending prompt length, optionally
grouped by a column (closed questions that are ranked apart from the generated ones). The
runner orders results by dataset index afterwards, so answers files keep the data set's order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

Arrange = Callable[[list[int], int], list[int]]  # (epoch order, epoch) -> new order


def text_lengths(dataset: Any, epoch: int, columns: Sequence[str] = ("text_input", "text_output")) -> np.ndarray | None:
    """Per index, the text length ``dataset`` reports for ``epoch`` (None if it cannot tell)."""
    lengths = getattr(dataset, "text_lengths", None)
    if not callable(lengths):
        return None
    set_epoch = getattr(dataset, "set_epoch", None)
    if callable(set_epoch):  # a mixture redraws its index -> item table per epoch
        set_epoch(epoch)
    values = lengths(columns)
    return None if values is None else np.asarray(values, dtype=np.int64)


def length_buckets(lengths: np.ndarray, tolerance: float) -> np.ndarray:
    """Lengths on a log scale in steps of (1 + ``tolerance``): items in one bucket count as equally
    long, so their order stays random (0: exact lengths)."""
    lengths = np.asarray(lengths)
    if tolerance <= 0:
        return lengths
    return np.floor(np.log1p(lengths) / np.log1p(tolerance)).astype(np.int64)


def group_by_length(
    order: Sequence[int], lengths: np.ndarray, group: int, megabatch: int, rng: np.random.Generator,
    tolerance: float = 0.0,
) -> list[int]:
    """``order`` rearranged into consecutive groups of ``group`` similar lengths (see module doc);
    lengths within ``tolerance`` of each other (one bucket of ``length_buckets``) keep their
    random order.

    A last partial group (``len(order) % group`` items) stays at the end, so every full group
    lines up with one global batch.
    """
    if group < 1 or megabatch < 1:
        raise ValueError(f"group ({group}) and megabatch ({megabatch}) must be >= 1")
    order = np.asarray(order, dtype=np.int64)
    keys = length_buckets(lengths, tolerance)
    span = group * megabatch
    chunks = [order[start : start + span] for start in range(0, len(order), span)]
    # stable: items of equal length (bucket) keep their random order
    flat = np.concatenate([c[np.argsort(-keys[c], kind="stable")] for c in chunks]) if chunks else order
    full = len(flat) // group
    groups, rest = flat[: full * group].reshape(full, group), flat[full * group :]
    if full:
        groups = groups[rng.permutation(full)]
        longest = int(np.argmax(lengths[groups].max(axis=1)))
        groups[[0, longest]] = groups[[longest, 0]]
    return np.concatenate([groups.reshape(-1), rest]).tolist()


def padded_fraction(order: Sequence[int], lengths: np.ndarray, batch: int) -> float:
    """Share of the padded batch positions that are padding when ``order`` is cut into batches
    of ``batch`` (lengths as given): what grouping saves."""
    lengths = np.asarray(lengths)[np.asarray(order, dtype=np.int64)]
    padded = sum(int(lengths[i : i + batch].max()) * len(lengths[i : i + batch]) for i in range(0, len(lengths), batch))
    return 1.0 - float(lengths.sum()) / padded if padded else 0.0


class LengthGrouping:
    """The training sampler's arrangement (called with the epoch's permutation) and the loss
    weight of each of its global batches."""

    def __init__(self, dataset: Any, group: int, megabatch: int, seed: int, tolerance: float = 0.0) -> None:
        self.dataset, self.group, self.megabatch, self.seed = dataset, group, megabatch, seed
        self.tolerance = tolerance

    def __call__(self, order: list[int], epoch: int) -> list[int]:
        lengths = text_lengths(self.dataset, epoch)
        rng = np.random.default_rng([self.seed, epoch, 1])
        return group_by_length(order, lengths, self.group, self.megabatch, rng, self.tolerance)

    def batch_weights(self, global_order: Sequence[int], epoch: int) -> np.ndarray:
        """Per global batch of ``global_order`` (the sampler's padded order of ``epoch``): its answer
        characters over the mean per batch (see the module doc); ones when no answer text exists."""
        answers = text_lengths(self.dataset, epoch, columns=("text_output",))
        batches = math.ceil(len(global_order) / self.group)
        if answers is None or not answers.any():
            return np.ones(batches)
        per_item = answers[np.asarray(global_order, dtype=np.int64)].astype(np.float64)
        totals = np.add.reduceat(per_item, np.arange(0, len(per_item), self.group))
        return totals / totals.mean() if totals.mean() > 0 else np.ones(batches)


def train_arrangement(
    dataset: Any, group: int, megabatch: int, seed: int, tolerance: float = 0.0
) -> LengthGrouping | None:
    """The training sampler's length grouping for ``dataset``, or None (logged) when the data set
    cannot report text lengths without loading items (then batches stay random)."""
    if text_lengths(dataset, 0) is None:
        logger.info("run.group_by_length: %s reports no text lengths, batches stay random", type(dataset).__name__)
        return None
    return LengthGrouping(dataset, group, megabatch, seed, tolerance)


def eval_arrangement(dataset: Any, group_column: str | None = None) -> Arrange | None:
    """Evaluation order: by ``group_column`` value (if any), then longest prompt first; None when
    the data set reports no prompt lengths."""
    lengths = text_lengths(dataset, 0, columns=("text_input",))
    if lengths is None:
        return None
    column = getattr(dataset, "column", None)
    groups = column(group_column) if group_column and callable(column) else [None] * len(lengths)
    rank = {value: i for i, value in enumerate(sorted({str(g) for g in groups}))}
    keys = np.asarray([rank[str(g)] for g in groups], dtype=np.int64)
    order = np.lexsort((-lengths, keys)).tolist()  # last key is primary; lexsort is stable

    def arrange(_: list[int], epoch: int) -> list[int]:
        return order

    return arrange
