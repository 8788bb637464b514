"""Reading caption tables: the Quilt-1M lookup CSV and JSONL, filters, stable ids, clear errors."""

from __future__ import annotations

import json

import pytest

from lavis.common.errors import DataError
from lavis.instructions.io import read_captions


def test_quilt_csv_fields_and_list_literals(quilt_csv):
    path = quilt_csv(["First  caption\nwith newline.", "Second caption."])
    records = read_captions(path)
    assert [r["caption_id"] for r in records] == ["0", "1"]
    first, second = records
    assert first["caption"] == "First caption with newline."  # whitespace normalised
    assert first["image"] == "img_0000.jpg" and first["subset"] == "quilt" and first["split"] == "val"
    assert first["pathology"] == ["Breast"] and first["roi_text"] == [] and first["med_umls_ids"] == ["C0006826"]
    assert second["pathology"] == ["Gastrointestinal", "Dermatopathology"]
    assert second["roi_text"] == ["nests of tumour cells", "fibrous stroma"]
    assert second["magnification"] == "1"


def test_filters_keep_row_number_ids_stable(quilt_csv):
    path = quilt_csv([f"caption {i}" for i in range(12)])
    quilt = read_captions(path, subset="quilt")
    assert [r["caption_id"] for r in quilt] == ["0", "3", "6", "9"]
    assert [r["caption_id"] for r in read_captions(path, subset=["OpenPath", "pubmed"], limit=3)] == ["1", "2", "4"]
    derm = read_captions(path, pathology="dermatopathology")
    assert [r["caption_id"] for r in derm] == ["1", "5", "9"]
    assert [r["caption_id"] for r in read_captions(path, split="val")] == ["0", "5", "10"]
    assert [r["caption_id"] for r in read_captions(path, pathology="breast,pulmonary", limit=2)] == ["0", "2"]


def test_later_release_flags(tmp_path):
    path = tmp_path / "lookup.csv"
    path.write_text("caption,image_path,single_wsi,not_histology\na,1.jpg,1,False\nb,2.jpg,0,True\nc,3.jpg,0,\n")
    assert [r["caption_id"] for r in read_captions(path)] == ["0", "1", "2"]
    assert [r["caption_id"] for r in read_captions(path, histology_only=True)] == ["0", "2"]
    path.write_text("caption,image_path,not_histology\na,1.jpg,maybe\n")
    with pytest.raises(DataError, match=r"row 0 \(line 2\): field 'not_histology' must be true/false"):
        read_captions(path, histology_only=True)


def test_caption_field_choice(quilt_csv):
    records = read_captions(quilt_csv(["a caption"]), caption_field="corrected_text")
    assert records[0]["caption"] == "corrected a caption"


def test_id_column_wins_over_row_number(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,caption,image_path\nabc,one,1.jpg\nxyz,two,2.jpg\n")
    assert [r["caption_id"] for r in read_captions(path)] == ["abc", "xyz"]


def test_jsonl_input_with_attributes(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [
        {"id": 7, "image": "a.png", "caption": "dense tissue", "stain": "H&E", "attributes": {"tissue_density": "dense"}},
        {"id": 8, "image": "b.png", "caption": "loose tissue", "pathology": "Breast"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    records = read_captions(path)
    assert [r["caption_id"] for r in records] == ["7", "8"]
    assert records[0]["attributes"] == {"tissue_density": "dense"} and records[0]["stain"] == "H&E"
    assert records[1]["pathology"] == ["Breast"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("caption,image_path\nok,1.jpg\n,2.jpg\n", r"row 1 \(line 3\): field 'caption' is missing or empty"),
        ("caption,image_path\nok,1.jpg,extra\n", r"row 0 \(line 2\): 3 fields, header has 2"),
        ("caption,image_path,pathology\nok,1.jpg\n", r"row 0 \(line 2\): too few fields; missing value for field 'pathology'"),
        ("caption,image_path,pathology\nok,1.jpg,\"['Breast'\"\n", r"row 0 \(line 2\): field 'pathology' is not a valid list literal"),
        ("caption,other\nok,1.jpg\n", r"row 0 \(line 2\): field 'image_path or image' is missing"),
        ("id,caption,image_path\na,x,1.jpg\na,y,2.jpg\n", r"row 1 \(line 3\): field 'id' repeats 'a'"),
    ],
)
def test_malformed_csv_rows_name_file_row_and_field(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        read_captions(path)
    assert str(path) in str(err.value)


def test_malformed_jsonl_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"caption": "a", "image": "1.jpg"}\n\n{"caption": "b", "image": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl: line 3, column 26: invalid JSON"):
        read_captions(path)
    path.write_text('{"caption": "a", "image": "1.jpg", "attributes": [1]}\n')
    with pytest.raises(DataError, match=r"line 1\): field 'attributes' must be a mapping"):
        read_captions(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="caption file not found"):
        read_captions(tmp_path / "nope.csv")
