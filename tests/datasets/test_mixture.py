from collections import Counter

import pytest
from torch.utils.data import Dataset, DistributedSampler

from lavis.datasets.mixture import MixtureDataset, largest_remainder


class Items(Dataset):
    def __init__(self, name, size):
        self.name, self.size, self.epochs = name, size, []

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return {"source": self.name, "index": index, "image_id": index // 2}

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


def _draws(mixture):
    return [(item["source"], item["index"]) for item in (mixture[i] for i in range(len(mixture)))]


def test_ratios_set_each_part_share():
    mixture = MixtureDataset([Items("a", 100), Items("b", 20)], ratios=[1.0, 3.0], seed=0)
    assert len(mixture) == 120
    counts = Counter(source for source, _ in _draws(mixture))
    assert counts == {"a": 30, "b": 90}
    # b is upsampled: every b item appears 4 or 5 times, a is downsampled without repeats.
    b_items = Counter(index for source, index in _draws(mixture) if source == "b")
    assert set(b_items.values()) <= {4, 5} and len(b_items) == 20
    a_items = Counter(index for source, index in _draws(mixture) if source == "a")
    assert max(a_items.values()) == 1


def test_same_seed_and_epoch_give_the_same_map_and_epochs_differ():
    parts = [Items("a", 50), Items("b", 30)]
    first = MixtureDataset(parts, [1, 1], seed=7, length=64)
    second = MixtureDataset(parts, [1, 1], seed=7, length=64)
    assert _draws(first) == _draws(second)
    first.set_epoch(1)
    epoch1 = _draws(first)
    assert epoch1 != _draws(second)
    second.set_epoch(1)
    assert _draws(second) == epoch1
    assert _draws(MixtureDataset(parts, [1, 1], seed=8, length=64)) != _draws(MixtureDataset(parts, [1, 1], seed=7, length=64))


def test_set_epoch_reaches_the_parts():
    part = Items("a", 5)
    mixture = MixtureDataset([part], [1.0])
    mixture.set_epoch(3)
    assert part.epochs[-1] == 3


def test_image_ids_do_not_collide_across_parts():
    mixture = MixtureDataset([Items("a", 10), Items("b", 10)], [1, 1])
    ids = {}
    for i in range(len(mixture)):
        item = mixture[i]
        ids.setdefault(item["image_id"], set()).add(item["source"])
    assert all(len(sources) == 1 for sources in ids.values())


def test_distributed_sampler_ranks_cover_the_epoch_exactly_once():
    mixture = MixtureDataset([Items("a", 40), Items("b", 24)], [2, 1], seed=3)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(mixture, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(2)
        seen += list(sampler)
    assert sorted(seen) == list(range(len(mixture)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="ratios must be > 0"):
        MixtureDataset([Items("a", 3)], [0.0])
    with pytest.raises(ValueError, match="2 datasets but 1 ratios"):
        MixtureDataset([Items("a", 3), Items("b", 3)], [1.0])
    with pytest.raises(ValueError, match="empty dataset"):
        MixtureDataset([Items("a", 0)], [1.0])


def test_largest_remainder_sums_to_total():
    assert largest_remainder(10, [1 / 3, 1 / 3, 1 / 3]) == [4, 3, 3]
    assert sum(largest_remainder(7, [0.5, 0.25, 0.25])) == 7
