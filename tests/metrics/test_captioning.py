"""COCO caption metrics through pycocoevalcap (Java tokenizer and METEOR), and their input checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lavis.common.errors import DataError, WeightsNotFoundError
from lavis.metrics import captioning
from lavis.metrics.captioning import load_caption_predictions, load_caption_references, score_captions
from lavis.metrics.captioning.__main__ import main

REFERENCES = {
    1: ["An H&E section of skin with a dense lymphocytic infiltrate.", "Skin with many lymphocytes."],
    2: ["Colonic mucosa shows crypt abscesses."],
    3: ["Liver tissue\nwith macrovesicular steatosis."],  # a line break must not shift the tokenizer's lines
}


def _child_pids() -> set[int]:
    """Live children of this process, read from /proc (the METEOR jar must not outlive scoring)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            children.add(int(entry.name))
    return children


def test_identical_captions_after_ptb_tokenization() -> None:
    before = _child_pids()
    # same words as the first reference; case and punctuation differ, which PTBTokenizer removes
    predictions = {
        1: "an H&E section of skin, with a dense lymphocytic infiltrate",
        2: "COLONIC MUCOSA SHOWS CRYPT ABSCESSES!",
        3: "liver tissue with macrovesicular steatosis",
    }
    scores = score_captions(REFERENCES, predictions)
    assert set(scores) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"}
    # each prediction equals one reference: every n-gram matches and the closest reference length
    # equals the prediction's, so BLEU-4 = 1 (up to pycocoevalcap's 1e-9 smoothing terms)
    assert scores["Bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ROUGE_L"] == pytest.approx(1.0)
    assert scores["METEOR"] > 0.9
    assert scores["CIDEr"] > 0
    assert _child_pids() == before  # METEOR's Java process was closed


def test_spice_fails_fast_without_corenlp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(captioning, "spice_lib_dir", lambda: tmp_path)
    with pytest.raises(WeightsNotFoundError) as caught:
        score_captions(REFERENCES, {key: refs[0] for key, refs in REFERENCES.items()}, spice=True)
    message = str(caught.value)
    assert (
        str(tmp_path) in message and "stanford-corenlp-3.6.0-models.jar" in message and "Download" in message
    )


@pytest.mark.parametrize(
    ("references", "predictions", "expected"),
    [
        ({1: ["a"]}, {2: "a"}, r"no prediction for \[1\].*no references for \[2\]"),
        ({1: "a cat"}, {1: "a"}, r"references\[1\] must be a non-empty list"),
        ({1: []}, {1: "a"}, r"references\[1\] must be a non-empty list"),
        ({1: ["a"]}, {1: None}, r"predictions\[1\] must be a string"),
        ({}, {}, "no captions"),
    ],
)
def test_bad_caption_input(references: dict, predictions: dict, expected: str) -> None:
    with pytest.raises(DataError, match=expected):
        score_captions(references, predictions)


def test_caption_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    coco = {
        "images": [{"id": 7}],
        "annotations": [{"image_id": 7, "id": 1, "caption": "a"}, {"image_id": 7, "id": 2, "caption": "b"}],
    }
    gt = tmp_path / "coco_gt.json"
    gt.write_text(json.dumps(coco))
    assert load_caption_references(gt) == {7: ["a", "b"]}
    pred = tmp_path / "pred.jsonl"
    pred.write_text('{"image_id": 7, "caption": "x"}\n{"image_id": 7, "caption": "y"}\n')
    with pytest.raises(DataError, match=r"pred.jsonl: line 2: duplicate image_id 7"):
        load_caption_predictions(pred)
    # the command reports bad input on one line, before starting any Java
    pred.write_text('{"image_id": 8, "caption": "x"}\n')
    assert main(["--gt", str(gt), "--pred", str(pred)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: caption ids differ") and error.count("\n") == 1


def test_missing_java_is_named_before_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    from lavis.common.errors import JavaNotFoundError, LavisError

    assert captioning.JavaNotFoundError is JavaNotFoundError  # still importable from its old place
    monkeypatch.setattr(captioning.shutil, "which", lambda name: None)
    with pytest.raises(JavaNotFoundError, match="need Java on PATH") as caught:
        score_captions(REFERENCES, {key: refs[0] for key, refs in REFERENCES.items()})
    assert isinstance(caught.value, LavisError) and isinstance(caught.value, FileNotFoundError)


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"annotations": [{"image_id": 7, "caption": "caf\u00e9"}]}, ensure_ascii=False),  # one document
        '{"image_id": 7, "caption": "caf\u00e9"}\n{"image_id": 8, "caption": "b"}\n',  # JSON lines
        json.dumps([{"image_id": 7, "caption": "caf\u00e9"}], ensure_ascii=False),  # a JSON list
    ],
)
def test_caption_references_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture, content: str) -> None:
    gt = tmp_path / "latin1_gt.json"
    gt.write_bytes(content.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1_gt\.json: .*not UTF-8 text"):
        load_caption_references(gt)
    # the command says so on one line instead of a traceback
    pred = tmp_path / "pred.jsonl"
    pred.write_text('{"image_id": 7, "caption": "x"}\n')
    assert main(["--gt", str(gt), "--pred", str(pred)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "latin1_gt.json" in error and error.count("\n") == 1


def test_caption_references_layouts(tmp_path: Path) -> None:
    rows = [{"image_id": 7, "caption": "a"}, {"image_id": "x", "caption": "b"}, {"image_id": 7, "caption": "c"}]
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(rows, indent=1))
    lines = tmp_path / "lines.jsonl"
    lines.write_text("".join(json.dumps(row) + "\n" for row in rows))
    expected = {7: ["a", "c"], "x": ["b"]}
    assert load_caption_references(listed) == expected
    assert load_caption_references(lines) == expected
    # records keep their place in the messages, whichever layout
    listed.write_text(json.dumps([rows[0], {"image_id": 8}]))
    with pytest.raises(DataError, match=r"list\.json: item 1: field 'caption' is missing"):
        load_caption_references(listed)
    lines.write_text(json.dumps(rows[0]) + "\n[1]\n")
    with pytest.raises(DataError, match=r"lines\.jsonl: line 2: expected a JSON object, got list"):
        load_caption_references(lines)
