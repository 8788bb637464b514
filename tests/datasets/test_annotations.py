import logging
import os
import pickle

import pytest

from lavis.common.errors import DataError
from lavis.datasets.annotations import (
    check_unique,
    field,
    read_csv,
    read_json,
    read_jsonl,
    read_parquet,
    read_pickle,
    require_non_null,
)


def test_malformed_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "answers.json"
    path.write_text('[\n  {"id": 1, "answer": "yes"},\n  {"id": 2 "answer": "no"}\n]')
    with pytest.raises(DataError, match=r"answers\.json: line 3, column 12: invalid JSON \(Expecting ',' delimiter\)"):
        read_json(path)


def test_malformed_jsonl_names_the_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question_id": 1}\n\n{"question_id": 2\n')
    with pytest.raises(DataError, match=r"q\.jsonl: line 3, column \d+: invalid JSON"):
        read_jsonl(path)


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"q\.jsonl: line 2: expected a JSON object, got list"):
        read_jsonl(path)


def test_field_reports_missing_and_wrong_type():
    with pytest.raises(DataError, match=r"f\.jsonl: line 4, field 'image': missing \(expected a string\)"):
        field({"text": "q"}, "image", "f.jsonl: line 4")
    with pytest.raises(DataError, match=r"field 'question_id': expected an integer or a string, got 1\.5"):
        field({"question_id": 1.5}, "question_id", "f.jsonl: line 1", (int, str))
    assert field({"x": None}, "x", "w", required=False) is None


def test_csv_with_a_short_row_names_row_and_line(tmp_path, write):
    path = write.csv(tmp_path / "lookup.csv", ["caption", "image_path"], [["a", "1.jpg"], ["b", "2.jpg"]])
    with open(path, "a") as f:
        f.write("only-one-field\n")
    with pytest.raises(DataError, match=r"lookup\.csv: malformed CSV: row 3 \(line 4\): expected 2 fields, got 1"):
        read_csv(path, ["caption", "image_path"])


def test_csv_missing_column_is_named(tmp_path, write):
    path = write.csv(tmp_path / "lookup.csv", ["caption", "img"], [["a", "1.jpg"]])
    with pytest.raises(DataError, match=r"lookup\.csv: line 1 \(header\): missing column\(s\) \['image_path'\]"):
        read_csv(path, ["caption", "image_path"])


def test_csv_reads_quoted_newlines_and_empty_cells_as_null(tmp_path, write):
    path = write.csv(tmp_path / "x.csv", ["", "caption", "image_path"], [[0, "two\nlines", "a.jpg"], [1, "", "b.jpg"]])
    table = read_csv(path, ["caption", "image_path"])
    assert table.column("caption").to_pylist() == ["two\nlines", None]
    with pytest.raises(DataError, match=r"x\.csv: row 2, field 'caption': empty value \(1 row"):
        require_non_null(table, "caption", str(path))


def test_unreadable_parquet_names_the_file(tmp_path):
    path = tmp_path / "test-00000-of-00001.parquet"
    path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DataError, match=r"test-00000-of-00001\.parquet: not a readable parquet file"):
        read_parquet([path], ["question"])


def test_parquet_missing_column_is_named(tmp_path, write):
    path = write.parquet(tmp_path / "t.parquet", {"question": ["q"], "answers": ["a"]})
    with pytest.raises(DataError, match=r"t\.parquet: missing column\(s\) \['answer'\]"):
        read_parquet([path], ["question", "answer"])


class _Sneaky:
    def __reduce__(self):
        return (os.system, ("true",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "train_qa.pkl"
    path.write_bytes(pickle.dumps([{"image": "train_0001", "evil": _Sneaky()}]))
    with pytest.raises(DataError, match=r"train_qa\.pkl: not a readable data pickle.*only plain data"):
        read_pickle(path)


def test_truncated_pickle_names_the_file(tmp_path):
    path = tmp_path / "test_vqa.pkl"
    path.write_bytes(pickle.dumps([{"sent": "q"}] * 10)[:20])
    with pytest.raises(DataError, match=r"test_vqa\.pkl: not a readable data pickle"):
        read_pickle(path)


def test_duplicate_ids_warn_or_fail(caplog):
    with caplog.at_level(logging.WARNING):
        check_unique([1, 2, 2, 3, 3, 3], "train.json", "question_id", required=False)
    assert "2 duplicate question_id(s), 3 extra row(s); first: [2, 3]" in caplog.text
    with pytest.raises(DataError, match=r"test\.json: 1 duplicate question_id.*first: \[7\].*must be unique"):
        check_unique([7, 7, 8], "test.json", "question_id", required=True)
    check_unique([1, 2, 3], "ok.json", "question_id", required=True)
