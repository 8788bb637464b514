"""Length-grouped batches: the same samples each epoch, less padding, seeded, resumable, and the
same global batches for any number of ranks; evaluation sorted by prompt length."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from lavis.runners.data import ResumableDistributedSampler
from lavis.runners.length_grouping import (
    eval_arrangement,
    group_by_length,
    padded_fraction,
    text_lengths,
    train_arrangement,
)


class Texts:
    """A data set that reports text lengths (as SampleTable does) without loading items."""

    def __init__(self, lengths: list[int], groups: list[str] | None = None, answers: list[int] | None = None) -> None:
        self.lengths = np.asarray(lengths)
        self.groups = groups
        self.answers = np.asarray(answers if answers is not None else lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def text_lengths(self, columns=("text_input", "text_output")):
        return self.answers if tuple(columns) == ("text_output",) else self.lengths

    def column(self, name: str) -> list[str]:
        return list(self.groups)


def skewed_lengths(count: int, seed: int = 0) -> list[int]:
    """Mostly short texts with a long tail, like instruction data (1 to 150 words)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(3.0, 1.0, count), 2, 900).astype(int).tolist()


def epoch_batches(sampler: ResumableDistributedSampler, batch: int, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    order = [index for _, index in sampler]
    return [order[i : i + batch] for i in range(0, len(order), batch)]


def test_grouping_keeps_every_sample_and_removes_most_padding():
    lengths = np.asarray(skewed_lengths(1000))
    order = np.random.default_rng(1).permutation(1000).tolist()
    grouped = group_by_length(order, lengths, group=8, megabatch=50, rng=np.random.default_rng(0))
    assert sorted(grouped) == list(range(1000))
    random_waste, grouped_waste = padded_fraction(order, lengths, 8), padded_fraction(grouped, lengths, 8)
    assert random_waste > 0.5 and grouped_waste < random_waste / 4, (random_waste, grouped_waste)
    first = lengths[grouped[:8]].max()
    assert first == lengths.max()  # the longest batch comes first: out-of-memory shows at step one


def test_partial_last_group_stays_last_so_full_groups_align_with_batches():
    lengths = np.arange(10)[::-1].copy()  # index 0 is the longest
    grouped = group_by_length(list(range(10)), lengths, group=4, megabatch=1, rng=np.random.default_rng(0))
    assert sorted(grouped[:4]) == [0, 1, 2, 3] and sorted(grouped[4:8]) == [4, 5, 6, 7]
    assert sorted(grouped[8:]) == [8, 9]  # the 10 % 4 remainder, from the last mega-batch


def test_sampler_order_is_seeded_differs_between_epochs_and_resumes_exactly():
    data = Texts(skewed_lengths(203))
    make = lambda seed: ResumableDistributedSampler(  # noqa: E731
        len(data), seed=seed, arrange=train_arrangement(data, group=4, megabatch=5, seed=seed))
    a, b = epoch_batches(make(7), 4, 0), epoch_batches(make(7), 4, 0)
    assert a == b
    assert epoch_batches(make(7), 4, 1) != a and epoch_batches(make(8), 4, 0) != a
    assert sorted(i for batch in a for i in batch) == list(range(203))
    resumed = make(7)
    resumed.set_epoch(0, start=4 * 9)  # a checkpoint after 9 batches
    assert [index for _, index in resumed] == [i for batch in a[9:] for i in batch]


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_together_see_the_global_batches_of_one_process(world):
    data = Texts(skewed_lengths(150, seed=2))
    per_rank = 4
    single = ResumableDistributedSampler(
        len(data), 1, 0, seed=3, arrange=train_arrangement(data, per_rank * world, 10, seed=3))
    expected = epoch_batches(single, per_rank * world, 2)
    ranks = [
        epoch_batches(ResumableDistributedSampler(len(data), world, r, seed=3,
                                                  arrange=train_arrangement(data, per_rank * world, 10, seed=3)),
                      per_rank, 2)
        for r in range(world)
    ]
    for k, batch in enumerate(expected[:-1]):  # the last one is completed with padding repeats
        assert sorted(i for rank in ranks for i in rank[k]) == sorted(batch)


def test_mixture_lengths_follow_its_epoch_table(tmp_path):
    from lavis.datasets.datasets.sample_table import SampleTable
    from lavis.datasets.mixture import MixtureDataset

    def table(texts: list[str], answers: list[str | None]) -> SampleTable:
        return SampleTable(pa.table({"image_path": ["x.png"] * len(texts), "text_input": texts,
                                     "text_output": pa.array(answers, pa.string())}), tmp_path)

    short = table(["ab", "abc"], ["x", None])
    long = table(["a" * 50, "b" * 60, "c" * 70], ["y" * 10, "z", ""])
    assert short.text_lengths().tolist() == [3, 3] and long.text_lengths().tolist() == [60, 61, 70]
    assert long.text_lengths(("text_input",)).tolist() == [50, 60, 70]
    mixture = MixtureDataset([short, long], [1.0, 3.0], seed=5, length=8)
    for epoch in (0, 1):
        lengths = text_lengths(mixture, epoch)
        expected = [mixture.datasets[p].text_lengths()[i] for p, i in map(mixture.locate, range(8))]
        assert lengths.tolist() == expected


def test_data_without_lengths_keeps_random_batches():
    class Plain:
        def __len__(self) -> int:
            return 5

    assert train_arrangement(Plain(), 4, 50, seed=0) is None
    assert eval_arrangement(Plain()) is None


def test_evaluation_order_groups_a_column_then_longest_prompt_first():
    data = Texts([5, 30, 12, 30, 7, 40], ["OPEN", "CLOSED", "OPEN", "OPEN", "CLOSED", "OPEN"])
    assert eval_arrangement(data)(list(range(6)), 0) == [5, 1, 3, 2, 4, 0]
    assert eval_arrangement(data, "answer_type")(list(range(6)), 0) == [1, 4, 5, 3, 2, 0]
    sampler = ResumableDistributedSampler(6, 2, 1, shuffle=False, arrange=eval_arrangement(data))
    sampler.set_epoch(0)
    assert [i for _, i in sampler] == [1, 2, 0]  # rank 1 of 2: every other position of the sorted order


def test_batch_weights_give_every_answer_character_the_same_weight():
    from lavis.runners.length_grouping import LengthGrouping

    data = Texts([0] * 6, answers=[1, 1, 10, 10, 4, 4])
    grouping = LengthGrouping(data, group=2, megabatch=1, seed=0)
    weights = grouping.batch_weights([0, 1, 2, 3, 4, 5], epoch=0)
    assert weights.tolist() == pytest.approx([2 / 10, 20 / 10, 8 / 10])  # answer chars per batch / mean (10)
    # a batch's token-mean loss times its weight = its summed per-character loss / mean batch characters
    assert weights.mean() == pytest.approx(1.0)
    assert LengthGrouping(Texts([0] * 4, answers=[0] * 4), 2, 1, 0).batch_weights([0, 1, 2, 3], 0).tolist() == [1, 1]
    padded = grouping.batch_weights([0, 1, 2, 3, 4, 5, 0], epoch=0)  # a last partial batch padded by the sampler
    assert len(padded) == 4 and padded[-1] == pytest.approx(1 / np.mean([2, 20, 8, 1]))


def test_sampler_global_order_is_what_the_ranks_interleave():
    data = Texts(skewed_lengths(21))
    samplers = [ResumableDistributedSampler(21, 2, r, seed=1, arrange=train_arrangement(data, 4, 5, seed=1))
                for r in range(2)]
    for sampler in samplers:
        sampler.set_epoch(3)
    order = samplers[0].global_order()
    assert len(order) == 22 and order == samplers[1].global_order(3)
    assert [i for _, i in samplers[1]] == order[1::2]


def test_tolerance_keeps_nearly_equal_lengths_in_random_order():
    """Answers that differ by a character ("...: yes." / "...: no.") must not be sorted apart."""
    from lavis.runners.length_grouping import length_buckets

    rng = np.random.default_rng(0)
    yes = rng.permutation(np.r_[np.zeros(40, int), np.ones(40, int)])  # 1 = the longer "yes" answer
    lengths = 24 + yes
    order = rng.permutation(80).tolist()
    exact = group_by_length(order, lengths, group=8, megabatch=10, rng=np.random.default_rng(1))
    tolerant = group_by_length(order, lengths, group=8, megabatch=10, rng=np.random.default_rng(1), tolerance=0.25)
    mixed = lambda arranged: sum(0 < yes[arranged[i : i + 8]].sum() < 8 for i in range(0, 80, 8))  # noqa: E731
    assert mixed(exact) <= 1 and mixed(tolerant) >= 7  # exact sorting makes one-label batches
    assert length_buckets(np.asarray([24, 25]), 0.25).tolist() == [14, 14]
    assert length_buckets(np.asarray([10, 100]), 0.25)[1] > length_buckets(np.asarray([10, 100]), 0.25)[0]
