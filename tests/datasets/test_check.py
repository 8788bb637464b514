"""``lavis.datasets.check`` on folders with missing, truncated and non-image files: the counts,
the report file, the exit code, and Quilt-1M's per-subset counts and readable-rows CSV."""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

from lavis.datasets.check import check_dataset
from lavis.datasets.check.__main__ import main as check_main


def test_quilt_vqa_folder_counts_missing_truncated_and_non_image_files(write, tmp_path, capsys):
    root = tmp_path / "quilt_vqa"
    images = root / "images"
    for name in ("a.jpg", "b.jpg", "c.png"):
        write.image_file(images / name)
    (images / "trunc.jpg").write_bytes(write.image_bytes()[:300])  # cut mid-stream
    (images / "page.jpg").write_text("<html>403 Forbidden</html>")  # an error page saved as an image
    rows = [(0, "a.jpg"), (1, "b.jpg"), (2, "c.png"), (3, "gone.jpg"), (4, "trunc.jpg"), (5, "page.jpg"),
            (6, "a.jpg"), (5, "b.jpg")]  # a second question on a.jpg; question id 5 twice
    write.jsonl(root / "quiltvqa_test_wo_ans.jsonl",
                [{"question_id": qid, "image": image, "text": f"question {n}?"} for n, (qid, image) in enumerate(rows)])
    write.json(root / "quiltvqa_test_w_ans.json",
               [{"id": qid, "answer": "Yes.", "answer_type": "CLOSED", "yes_no_answer": "yes"} for qid in range(7)])

    code = check_main(["quilt_vqa", "--root", str(root), "--workers", "2"])
    assert code == 1  # incomplete
    report = json.loads((root / "check.json").read_text())
    test = report["splits"]["test"]
    assert {k: test[k] for k in ("rows", "images", "present", "readable", "missing", "unreadable")} == {
        "rows": 8, "images": 6, "present": 5, "readable": 3, "missing": 1, "unreadable": 2,
    }
    assert test["rows_with_readable_image"] == 5 and test["duplicate_question_ids"] == 1
    assert test["examples"]["missing"] == ["gone.jpg: file not found"]
    reasons = " ".join(test["examples"]["unreadable"])
    assert "trunc.jpg: unreadable or truncated" in reasons and "page.jpg: not an image file" in reasons
    assert report["complete"] is False
    out = capsys.readouterr().out
    assert "INCOMPLETE" in out and "gone.jpg" in out


def test_parquet_images_are_decoded_from_the_table(write, tmp_path):
    root = tmp_path / "pathvqa"
    good = [{"bytes": write.image_bytes("PNG"), "path": f"{i}.png"} for i in range(3)]
    bad = {"bytes": b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "path": "broken.png"}
    write.parquet(root / "data/test-00000-of-00001.parquet",
                  {"image": [*good, bad], "question": ["q?"] * 4, "answer": ["yes"] * 4})
    report = check_dataset("pathvqa", root, ["files={test: data/test-*.parquet}"], workers=0)
    test = report["splits"]["test"]
    assert (test["images"], test["readable"], test["unreadable"], test["missing"]) == (4, 3, 1, 0)
    assert set(report["splits"]) == {"test"}


def _quilt_rows() -> list[dict[str, str]]:
    rows = []
    for i in range(4):  # quilt: 4 images, 2 captions each, one caption with a comma and a newline
        for c in range(2):
            rows.append({"caption": f"caption {i}-{c}, with \"quotes\"\nand a second line", "image_path": f"q{i}.jpg",
                         "subset": "quilt", "split": "train" if i < 3 else "val", "pathology": "breast"})
    rows.append({"caption": "openpath one", "image_path": "o0.jpg", "subset": "openpath", "split": "train",
                 "pathology": "skin"})
    rows.append({"caption": "openpath truncated", "image_path": "o1.jpg", "subset": "openpath", "split": "train",
                 "pathology": "skin"})
    for i in range(3):  # the pubmed images never arrived
        rows.append({"caption": f"pubmed {i}", "image_path": f"p{i}.jpg", "subset": "pubmed", "split": "train",
                     "pathology": "lung"})
    return rows


def test_quilt1m_counts_per_subset_and_writes_a_lookup_of_the_rows_that_are_there(write, tmp_path, build):
    root = tmp_path / "quilt1m"
    rows = _quilt_rows()
    header = ["caption", "image_path", "subset", "split", "pathology", "roi_text", "magnification"]
    write.csv(root / "quilt_1M_lookup.csv", header, [[r.get(h, "") for h in header] for r in rows])
    for name in ("q0.jpg", "q1.jpg", "q2.jpg", "q3.jpg", "o0.jpg"):
        write.image_file(root / "quilt_1m" / name)
    (root / "quilt_1m" / "o1.jpg").write_bytes(write.image_bytes()[:200])

    report = check_dataset("quilt1m", root, workers=0)
    assert report["images"] == {"images": 9, "present": 6, "readable": 5, "missing": 3, "unreadable": 1}
    subsets = report["subsets"]
    assert subsets["quilt"] == {"rows": 8, "rows_with_readable_image": 8, "images": 4, "present": 4,
                                "readable": 4, "missing": 0, "unreadable": 0}
    assert (subsets["openpath"]["readable"], subsets["openpath"]["unreadable"]) == (1, 1)
    assert (subsets["pubmed"]["images"], subsets["pubmed"]["missing"]) == (3, 3)
    assert report["splits"]["val"]["rows"] == 2 and report["splits"]["train"]["rows"] == 11
    assert report["complete"] is False

    readable = Path(report["readable_csv"]["path"])
    assert readable == root / "quilt_1M_lookup_readable.csv" and report["readable_csv"]["rows"] == 9
    with open(readable, newline="", encoding="utf-8") as handle:
        kept = list(csv.DictReader(handle))
    assert list(kept[0]) == header  # every column, in the file's order
    assert [r["image_path"] for r in kept] == [r["image_path"] for r in rows if r["image_path"] in
                                               {"q0.jpg", "q1.jpg", "q2.jpg", "q3.jpg", "o0.jpg"}]
    assert kept[0]["caption"] == rows[0]["caption"]  # quotes and newlines survive

    # the quilt1m builder reads it directly and every sample it yields has its image
    splits = build("quilt1m", storage=str(root), annotation=readable.name)
    train = splits["train"]
    assert len(train) == 7 and all("image" in train[i] for i in range(len(train)))
    assert len(splits["val"]) == 2


def test_shards_report_unreadable_samples_and_truncated_shards(write, tmp_path):
    from lavis.datasets.builders.quilt1m import Quilt1MFilter
    from lavis.datasets.tools.make_shards import make_shards

    src = tmp_path / "src"
    header = ["caption", "image_path", "subset", "split"]
    names = [f"{i}.jpg" for i in range(6)]
    write.csv(src / "lookup.csv", header, [[f"c{i}", n, "quilt", "train"] for i, n in enumerate(names)])
    for name in names:
        write.image_file(src / "img" / name)
    (src / "img" / names[1]).write_text("not an image")
    root = tmp_path / "wds"
    make_shards(src / "lookup.csv", src / "img", root / "shards", Quilt1MFilter(), shard_size=3, seed=-1)
    second = root / "shards" / "quilt1m-000001.tar"
    with tarfile.open(second) as tar:
        member = [m for m in tar.getmembers() if m.name.endswith(".jpg")][1]
    second.write_bytes(second.read_bytes()[: member.offset_data + member.size // 2])  # a copy cut mid-image

    train = check_dataset("quilt1m_wds", root, workers=0)["splits"]["train"]
    assert train["broken_shards"][0]["shard"] == "quilt1m-000001.tar"
    first = train["shards"][0]
    assert (first["samples"], first["readable"], first["unreadable"], first["error"]) == (3, 2, 1, None)
    assert "1.jpg" in train["examples"]["unreadable"][0] and "not an image" in train["examples"]["unreadable"][0]
    broken = train["broken_shards"][0]
    assert "truncated" in broken["error"] and broken["samples_read"] <= 1  # cut in its second sample
    assert train["samples"] == 3 + broken["samples_read"]
    assert tarfile.is_tarfile(root / "shards" / "quilt1m-000000.tar")


def test_bad_options_and_unknown_sets_are_one_line_errors(tmp_path, capsys):
    assert check_main(["quilt_vqa", "--root", str(tmp_path)]) == 2
    assert "quiltvqa_test_wo_ans.jsonl" in capsys.readouterr().err
    assert check_main(["nope", "--root", str(tmp_path)]) == 2
    assert "'nope'" in capsys.readouterr().err
    assert check_main(["pmc_vqa", "--root", str(tmp_path), "--options", "answer_style"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_probe_counts_are_consistent(tmp_path, write):
    from lavis.datasets.check.probe import probe_images

    files = [write.image_file(tmp_path / "x.jpg"), tmp_path / "missing.jpg"]
    result = probe_images(files, workers=0)
    assert result.counts() == {"images": 2, "present": 1, "readable": 1, "missing": 1, "unreadable": 0}
