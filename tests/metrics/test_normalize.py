"""Normalisation: the published rule with its quirks, and where the strict rule differs.

Expected strings are worked out by hand from the rule in the comments, not by running the code.
"""

from __future__ import annotations

import pytest

from lavis.metrics.normalize import normalize_reference, normalize_strict


@pytest.mark.parametrize("normalize", [normalize_reference, normalize_strict])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # number words become digits ("none" too); the mapping happens before articles are dropped
        ("Two cells and none", "2 cells and 0"),
        ("ten mitoses", "10 mitoses"),
        # articles are dropped wherever they are
        ("The tumor is an adenoma", "tumor is adenoma"),
        # "a , b": the comma touches a space -> deleted; "a" is an article -> "b"
        ("a , b", "b"),
        # a comma between digits is a thousands separator -> "1000"
        ("1,000 cells", "1000 cells"),
        # a period before a digit stays, every other period goes
        ("2.5 mm.", "2.5 mm"),
        ("e.g. mitoses", "eg mitoses"),
        # contractions from the VQA table gain their apostrophe
        ("It doesnt show", "it doesn't show"),
        # capitalised table keys ("Im") never match lower-cased words; the reversed entry stays reversed
        ("Im sure", "im sure"),
        ("somebody'd", "somebodyd"),
        # a mark glued between letters (and no other reason to delete) becomes a space
        ("x-ray shows", "x ray shows"),
        ("", ""),
    ],
)
def test_shared_rules(normalize, text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_reference_decides_punctuation_for_the_whole_string() -> None:
    # "1,000" somewhere means digit,digit: *every* listed mark is deleted, so "x-ray" -> "xray".
    assert normalize_reference("x-ray, 1,000 cells") == "xray 1000 cells"
    # "- " occurs once, so every "-" is deleted, including the one inside "well-differentiated".
    assert normalize_reference("well-differentiated - yes") == "welldifferentiated yes"
    # strict decides per mark: a glued hyphen is a space whatever the rest of the string holds
    assert normalize_strict("x-ray, 1,000 cells") == "x ray 1000 cells"
    assert normalize_strict("well-differentiated - yes") == "well differentiated yes"


def test_reference_deletes_only_32_periods_per_pass() -> None:
    # re.UNICODE (= 32) sits in the count argument: 40 periods -> 8 survive one pass
    assert normalize_reference("." * 40 + "x") == "." * 8 + "x"
    # a second pass (as the F1 helpers do) deletes the remaining 8
    assert normalize_reference("." * 8 + "x") == "x"
    assert normalize_strict("." * 40 + "x") == "x"


def test_strict_also_splits_on_colons() -> None:
    # ":" is not in the published list, so "ratio:" stays glued there
    assert normalize_reference("ratio: high") == "ratio: high"
    assert normalize_strict("ratio: high") == "ratio high"
