"""Stage-1 loss pieces: multi-positive ITC targets and hard-negative sampling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lavis.models.blip2.losses import contrastive_loss, sample_hard_negatives, soft_targets


def test_soft_targets_spread_over_same_image_ids():
    ids = torch.tensor([7, 3, 7])
    positive = ids[:, None] == ids[None, :]
    targets = soft_targets(positive, label_smoothing=0.1)
    # Row 0: positives at columns 0 and 2 -> 0.9 * 1/2 + 0.1/3 each, 0.1/3 elsewhere.
    expected = torch.tensor(
        [
            [0.45 + 0.1 / 3, 0.1 / 3, 0.45 + 0.1 / 3],
            [0.1 / 3, 0.9 + 0.1 / 3, 0.1 / 3],
            [0.45 + 0.1 / 3, 0.1 / 3, 0.45 + 0.1 / 3],
        ]
    )
    torch.testing.assert_close(targets, expected)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(3))


def test_contrastive_loss_hand_computed_two_positives():
    sim = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    positive = torch.tensor([[True, True], [True, True]])  # both samples show the same image
    # Targets are uniform (0.9 * 1/2 + 0.1/2 = 0.5); loss = -0.5 * sum(log_softmax) per row.
    row0 = -0.5 * (math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(1 / (math.exp(2) + 1)))
    row1 = -0.5 * 2 * math.log(0.5)
    expected = (row0 + row1) / 2
    torch.testing.assert_close(contrastive_loss(sim, sim, positive), torch.tensor(expected), atol=1e-6, rtol=0)


def test_contrastive_loss_unique_ids_equals_cross_entropy_with_smoothing():
    generator = torch.Generator().manual_seed(0)
    sim_i2t, sim_t2i = torch.randn(4, 4, generator=generator), torch.randn(4, 4, generator=generator)
    positive = torch.eye(4, dtype=torch.bool)
    targets = torch.arange(4)
    reference = (
        F.cross_entropy(sim_i2t, targets, label_smoothing=0.1) + F.cross_entropy(sim_t2i, targets, label_smoothing=0.1)
    ) / 2
    torch.testing.assert_close(contrastive_loss(sim_i2t, sim_t2i, positive), reference)


def test_hard_negatives_never_pick_a_positive():
    generator = torch.Generator().manual_seed(0)
    ids = torch.tensor([0, 1, 0, 2, 1, 3])
    positive = ids[:, None] == ids[None, :]
    sim = torch.randn(6, 6, generator=generator) * 5
    sim[positive] += 50.0  # positives would dominate an unmasked softmax
    for _ in range(200):
        index, valid = sample_hard_negatives(sim, positive, generator=generator)
        assert valid.all()
        assert not positive[torch.arange(6), index].any()


def test_hard_negatives_follow_similarity():
    positive = torch.eye(3, dtype=torch.bool)
    sim = torch.tensor([[0.0, 5.0, -5.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    generator = torch.Generator().manual_seed(1)
    picks = torch.stack([sample_hard_negatives(sim, positive, generator=generator)[0] for _ in range(300)])
    share = (picks[:, 0] == 1).float().mean()  # softmax weight of column 1 among {1, 2}: ~0.99995
    assert share > 0.97


def test_no_negative_rows_are_flagged_without_nan():
    # One sample in the whole world batch: its only candidate is itself.
    index, valid = sample_hard_negatives(torch.tensor([[3.0]]), torch.tensor([[True]]))
    assert not valid.any() and index.tolist() == [0]
    # Two captions of the same image: still no valid negative; tiny temperature: no underflow.
    positive = torch.ones(2, 2, dtype=torch.bool)
    index, valid = sample_hard_negatives(torch.tensor([[900.0, -900.0], [0.0, 1.0]]), positive)
    assert not valid.any()
    sim = torch.tensor([[1000.0, -1000.0, -1000.0]])  # cos/0.001: negatives underflow in prob space
    index, valid = sample_hard_negatives(sim, torch.tensor([[True, False, False]]))
    assert valid.all() and index.item() in (1, 2)
