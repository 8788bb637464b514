import pytest
import torch

from lavis.common.errors import DataError
from lavis.datasets.bad_data import SkippedSample
from lavis.datasets.collate import collate


def test_stacks_tensors_keeps_lists_and_reports_skips():
    items = [
        {"image": torch.full((3, 4, 4), 1.0), "text_input": "a", "image_id": 3, "yes_no_answer": None},
        SkippedSample("img/missing.jpg", "file not found"),
        {"image": torch.full((3, 4, 4), 2.0), "text_input": "b", "image_id": 5, "yes_no_answer": "yes"},
    ]
    batch = collate(items)
    assert batch["image"].shape == (2, 3, 4, 4)
    assert batch["image"][1, 0, 0, 0].item() == 2.0
    assert batch["text_input"] == ["a", "b"]
    assert batch["image_id"] == [3, 5]
    assert batch["yes_no_answer"] == [None, "yes"]
    assert batch["_skipped"] == ["img/missing.jpg: file not found"]
    assert batch["_size"] == 2


def test_skipped_is_always_present():
    batch = collate([{"text_input": "a"}])
    assert batch["_skipped"] == [] and batch["_size"] == 1


def test_all_skipped_batch_has_only_bookkeeping():
    batch = collate([SkippedSample("a.png", "truncated"), SkippedSample("b.png", "not an image")])
    assert batch == {"_skipped": ["a.png: truncated", "b.png: not an image"], "_size": 0,
                     "_skipped_samples": [SkippedSample("a.png", "truncated"), SkippedSample("b.png", "not an image")]}


def test_pads_integer_sequences_with_mask():
    batch = collate([{"ids": torch.tensor([5, 6, 7])}, {"ids": torch.tensor([8])}])
    assert batch["ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["ids_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["ids"].dtype == torch.int64


def test_integer_sequences_get_a_mask_even_when_equal_length():
    batch = collate([{"ids": torch.tensor([1, 2])}, {"ids": torch.tensor([3, 4])}])
    assert batch["ids_mask"].tolist() == [[1, 1], [1, 1]]


def test_given_mask_is_padded_without_a_mask_of_its_own():
    batch = collate([{"ids_mask": torch.tensor([1, 1])}, {"ids_mask": torch.tensor([1])}])
    assert batch["ids_mask"].tolist() == [[1, 1], [1, 0]]
    assert "ids_mask_mask" not in batch


def test_missing_key_becomes_none():
    batch = collate([{"answer": "yes", "text_input": "q"}, {"text_input": "r"}])
    assert batch["answer"] == ["yes", None]


def test_float_tensors_of_different_shapes_are_an_error():
    with pytest.raises(DataError, match="key 'image'.*different shapes"):
        collate([{"image": torch.zeros(3, 4, 4)}, {"image": torch.zeros(3, 5, 5)}])


def test_tensor_in_some_items_only_is_an_error():
    with pytest.raises(DataError, match="key 'image' is a tensor in some items"):
        collate([{"image": torch.zeros(3, 4, 4)}, {"image": None}])
