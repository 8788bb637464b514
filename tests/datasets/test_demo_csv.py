"""The demo's Quilt-1M lookup CSV: the same bytes as the csv module writes to a file."""

from __future__ import annotations

import csv

from lavis.datasets.builders.quilt1m import QUILT_COLUMNS
from lavis.datasets.demo.build import write_csv


def test_lookup_csv_bytes_match_a_plain_csv_file(tmp_path):
    rows = [{c: f'{c} {i}, "quoted"\nnext line é' for c in QUILT_COLUMNS} for i in range(3)]
    rows[0]["height"] = 224
    reference = tmp_path / "reference.csv"
    with open(reference, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=QUILT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    write_csv(tmp_path / "lookup.csv", rows)
    written = (tmp_path / "lookup.csv").read_bytes()
    assert written == reference.read_bytes()
    assert written.startswith(b"caption,image_path,") and b"\r\n" in written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lookup.csv", "reference.csv"]  # no temp left
