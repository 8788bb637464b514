"""The shared JSON / JSON-lines reader: records with their place, errors naming file, line / item, what."""

from __future__ import annotations

import pytest

from lavis.common.errors import DataError
from lavis.common.jsonio import iter_json_lines, iter_json_list, iter_json_records, read_json


def test_json_lines_keep_line_numbers_across_blank_lines(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\n\n  \n{"a": 2}\r\n{"a": "x\xe2\x80\xa8y"}\n')  # U+2028 inside a string
    records = list(iter_json_lines(path, objects=True))
    assert [r.value["a"] for r in records] == [1, 2, "x\u2028y"]
    assert [(r.index, r.line) for r in records] == [(0, 1), (1, 4), (2, 5)]
    assert records[1].where == f"{path}: line 4"


def test_json_list_items_are_numbered_from_zero(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[{"a": 1}, {"a": 2}]')
    records = list(iter_json_list(path))
    assert [(r.value, r.index, r.line, r.where) for r in records] == [
        ({"a": 1}, 0, None, f"{path}: item 0"),
        ({"a": 2}, 1, None, f"{path}: item 1"),
    ]


@pytest.mark.parametrize(
    ("content", "layout", "message"),
    [
        (b'{"a": 1}\n{"a": \n', "lines", r"a\.txt: line 2, column 6: invalid JSON \(Expecting value\)$"),
        (b'{"a": 1}\n[1]\n', "lines", r"a\.txt: line 2: expected a JSON object, got list"),
        (b'{"a": 1}\n{"a": "\xff"}\n', "lines", r"a\.txt: line 2: not UTF-8 text \(invalid start byte at byte 7 of the line\)"),
        (b'[{"a": 1},\n {"a" 2}]', "list", r"a\.txt: line 2, column 7: invalid JSON \(Expecting ':' delimiter\)"),
        (b'[{"a": 1}, 5]', "list", r"a\.txt: item 1: expected a JSON object, got int"),
        (b'{"a": 1}', "list", r"a\.txt: expected a JSON list, got dict"),
        (b'["\xff"]', "list", r"a\.txt: not UTF-8 text \(invalid start byte at byte 2\)"),
        (b'{\n"a": 1}\n', "auto", r"a\.txt: line 1, column 2: invalid JSON .*; expected a single JSON list or one JSON"),
    ],
)
def test_errors_name_file_place_and_problem(tmp_path, content, layout, message):
    path = tmp_path / "a.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        list(iter_json_records(path, layout, objects=True))


def test_auto_layout_reads_lists_and_lines(tmp_path):
    listed, lines, empty = tmp_path / "l.json", tmp_path / "l.jsonl", tmp_path / "e.jsonl"
    listed.write_text('\n  [{"a": 1}]')
    lines.write_text('{"a": 1}\n')
    empty.write_text("")
    assert [r.where for r in iter_json_records(listed)] == [f"{listed}: item 0"]
    assert [r.where for r in iter_json_records(lines)] == [f"{lines}: line 1"]
    assert list(iter_json_records(empty)) == []
    assert read_json(listed) == [{"a": 1}]
