"""Stage-1 loss pieces as plain functions: ITC with several positives per row, and hard-negative
sampling for ITM. All vectorised; no per-sample Python loops."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(positive: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Rows of ``positive`` (B, N) -> target distributions: mass spread evenly over the positives,
    then smoothed toward uniform (LAVIS: ``0.9 * targets + 0.1 / N``)."""
    targets = positive.float() / positive.float().sum(dim=1, keepdim=True)
    return (1.0 - label_smoothing) * targets + label_smoothing / positive.shape[1]


def contrastive_loss(
    sim_i2t: torch.Tensor, sim_t2i: torch.Tensor, positive: torch.Tensor, label_smoothing: float = 0.1
) -> torch.Tensor:
    """Mean of the image->text and text->image cross-entropies against ``soft_targets``.

    ``sim_i2t`` (B, N): local images vs all texts; ``sim_t2i`` (B, N): local texts vs all
    images; ``positive`` (B, N): same image id. Each row must hold at least one positive (its own
    pair). With one positive per row this equals ``F.cross_entropy(..., label_smoothing=...)``.
    """
    targets = soft_targets(positive, label_smoothing)
    loss_i2t = -(F.log_softmax(sim_i2t.float(), dim=1) * targets).sum(dim=1).mean()
    loss_t2i = -(F.log_softmax(sim_t2i.float(), dim=1) * targets).sum(dim=1).mean()
    return (loss_i2t + loss_t2i) / 2


@torch.no_grad()
def sample_hard_negatives(
    sim: torch.Tensor, positive: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One negative column per row, drawn from ``softmax(sim)`` restricted to non-positives.

    Returns ``(index, valid)``. A row with no negative at all (every candidate shares its image
    id, e.g. one sample in the whole world batch) gets ``valid=False`` and an arbitrary index;
    the caller leaves that pair out of the ITM loss instead of pairing it with a positive.
    Masking in logit space (-inf, not a zeroed probability) means no row underflows to all
    zeros even at the smallest temperature.
    """
    valid = (~positive).any(dim=1)
    logits = sim.float().masked_fill(positive, float("-inf"))
    logits = torch.where(valid[:, None], logits, torch.zeros_like(logits))  # no all -inf rows: no NaN
    probs = F.softmax(logits, dim=1)
    index = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return index, valid
