"""make_shards round trip and the streaming dataset: exactly once over ranks x workers, resume."""

import io
import json
import tarfile
from collections import Counter

import pytest
import torch
import webdataset
from torch.utils.data import DataLoader

from lavis.common import dist
from lavis.datasets.bad_data import SkippedSample
from lavis.datasets.collate import collate
from lavis.datasets.shards import iter_shard
from lavis.datasets.tools.make_shards import main as make_shards_main

HEADER = ["", "caption", "image_path", "subset", "split", "pathology", "roi_text", "noisy_text",
          "corrected_text", "med_umls_ids", "magnification", "height", "width"]  # fmt: skip
ROWS = 23


@pytest.fixture()
def quilt_files(tmp_path, write):
    root = tmp_path / "quilt"
    rows = []
    for i in range(ROWS):
        image = f"v{(i // 2) % 3}/img_{i // 2}.jpg"  # two captions per image
        rows.append([i, f"caption {i}: Gleason 3+4", image, "quilt", "train", "[]", "", "", f"fixed {i}", "", "1.0", "16", "16"])
        if i % 2 == 0:
            write.image_file(root / "quilt_1m" / image, size=(16, 16))
    write.csv(root / "quilt_1M_lookup.csv", HEADER, rows)
    return root


def _shard(root, shard_size, *extra):
    args = ["--csv", str(root / "quilt_1M_lookup.csv"), "--images", str(root / "quilt_1m"),
            "--out", str(root / "shards"), "--shard-size", str(shard_size), *extra]  # fmt: skip
    make_shards_main(args)
    return json.loads((root / "shards" / "shards.json").read_text())


def _stream(build, root, **overrides):
    return build("quilt1m_wds", storage=str(root), vis_processor={"train": {"image_size": 16}}, **overrides)["train"]


def _epoch(stream, workers=2, batch_size=2):
    loader = DataLoader(stream, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    return [batch.get("text_input", []) for batch in loader]


def test_round_trip_rows_in_equal_samples_out(quilt_files):
    manifest = _shard(quilt_files, 5)
    assert manifest["rows"] == ROWS and manifest["samples"] == ROWS and manifest["skipped"] == []
    assert [s["samples"] for s in manifest["shards"]] == [5, 5, 5, 5, 3]
    samples = [s for shard in manifest["shards"] for s in iter_shard(quilt_files / "shards" / shard["name"])]
    rows = [json.loads(s["json"]) for s in samples]
    assert sorted(r["row"] for r in rows) == list(range(1, ROWS + 1))  # 1-based CSV rows
    assert all(r["caption"].startswith(f"caption {r['row'] - 1}:") for r in rows)
    assert all(set(s) == {"__key__", "__url__", "jpg", "txt", "json"} for s in samples)
    assert all(s["txt"].decode() == json.loads(s["json"])["caption"] for s in samples)
    by_image = {}
    for row in rows:
        by_image.setdefault(row["image_path"], set()).add(row["image_id"])
    assert all(len(ids) == 1 for ids in by_image.values()) and len({r["image_id"] for r in rows}) == 12
    original = (quilt_files / "quilt_1m" / rows[0]["image_path"]).read_bytes()
    assert next(s for s in samples if json.loads(s["json"]) == rows[0])["jpg"] == original


def test_make_shards_output_reads_with_webdataset_unchanged_and_reruns_identically(quilt_files):
    manifest = _shard(quilt_files, 10)
    names = [quilt_files / "shards" / s["name"] for s in manifest["shards"]]
    first = [path.read_bytes() for path in names]
    dataset = webdataset.WebDataset([str(p) for p in names], shardshuffle=False).decode("pil").to_tuple("jpg", "txt", "json")
    rows = list(dataset)
    assert len(rows) == ROWS
    assert all(image.size == (16, 16) and text == row["caption"] and isinstance(row["image_id"], int) for image, text, row in rows)
    _shard(quilt_files, 10)
    assert [path.read_bytes() for path in names] == first  # reproducible: byte-identical shards
    assert not list((quilt_files / "shards").glob("*.tmp"))


def test_missing_images_are_listed_not_written(quilt_files):
    (quilt_files / "quilt_1m" / "v0" / "img_0.jpg").unlink()
    manifest = _shard(quilt_files, 10)
    assert manifest["samples"] == ROWS - 2
    assert sorted(s["row"] for s in manifest["skipped"]) == [1, 2]
    assert manifest["skipped"][0]["reason"] == "file not found"


@pytest.mark.parametrize("shard_size", [3, 10], ids=["shards>=slots", "shards<slots"])
def test_every_sample_exactly_once_over_2_ranks_x_2_workers(quilt_files, build, monkeypatch, shard_size):
    _shard(quilt_files, shard_size)
    stream = _stream(build, quilt_files)
    seen = Counter()
    for rank in range(2):
        monkeypatch.setattr(dist, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(dist, "get_world_size", lambda: 2)
        stream.set_epoch(1)
        for texts in _epoch(stream):
            seen.update(texts)
    assert seen == Counter(f"caption {i}: Gleason 3+4" for i in range(ROWS))


def test_items_follow_the_contract_and_epochs_reshuffle(quilt_files, build):
    _shard(quilt_files, 4)
    stream = _stream(build, quilt_files, caption_field="corrected_text")
    stream.set_epoch(0)
    loader = DataLoader(stream, batch_size=4, num_workers=0, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert all(t.startswith("fixed ") for t in batch["text_input"]) and len(batch["image_id"]) == 4
    first = [t for b in _epoch(stream, workers=0) for t in b]
    stream.set_epoch(0)
    assert [t for b in _epoch(stream, workers=0) for t in b] == first  # deterministic
    stream.set_epoch(1)
    second = [t for b in _epoch(stream, workers=0) for t in b]
    assert second != first and sorted(second) == sorted(first)


def test_set_skip_resumes_with_exactly_the_remaining_samples(quilt_files, build):
    _shard(quilt_files, 3)
    stream = _stream(build, quilt_files)
    stream.set_epoch(2)
    batches = _epoch(stream, workers=2, batch_size=2)
    done = 3  # batch j came from worker j % 2
    per_worker = [sum(len(batches[j]) for j in range(done) if j % 2 == w) for w in range(2)]
    assert per_worker == [4, 2]
    stream.set_epoch(2)
    stream.set_skip(per_worker)
    resumed = Counter(t for b in _epoch(stream, workers=2, batch_size=2) for t in b)
    expected = Counter(t for b in batches for t in b) - Counter(t for b in batches[:done] for t in b)
    assert resumed == expected and sum(resumed.values()) == ROWS - 6
    stream.set_epoch(3)  # a new epoch starts from the top again
    assert sum(len(b) for b in _epoch(stream)) == ROWS


def test_set_skip_must_match_the_worker_count(quilt_files, build):
    _shard(quilt_files, 5)
    stream = _stream(build, quilt_files)
    stream.set_epoch(0)
    stream.set_skip([1, 2, 3])
    with pytest.raises(ValueError, match="set_skip got 3 count"):
        list(stream)


def test_truncated_shard_and_bad_image_become_skips(quilt_files, build):
    manifest = _shard(quilt_files, 5)
    path = quilt_files / "shards" / manifest["shards"][0]["name"]
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w") as tar:  # replace the first image with garbage, keep the rest
        for member, data in members:
            data = b"not a jpeg" if member is members[0][0] else data
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    last = quilt_files / "shards" / manifest["shards"][-1]["name"]
    last.write_bytes(last.read_bytes()[:612])  # cut inside the first member's data
    stream = _stream(build, quilt_files, shuffle=False)
    stream.set_epoch(0)
    items = list(stream)
    skips = [i for i in items if isinstance(i, SkippedSample)]
    assert len(skips) == 2
    assert skips[0].reason.startswith("not an image file") and skips[0].path == json.loads(members[1][1])["image_path"]
    assert skips[1].path == str(last) and "unreadable or truncated shard" in skips[1].reason
    assert skips[1].reason.endswith("after 0 samples")
    assert len(items) - len(skips) == ROWS - 1 - manifest["shards"][-1]["samples"]


def test_decode_reports_bad_rows(write):
    from lavis.common.errors import DataError
    from lavis.datasets.datasets.quilt1m_stream import Quilt1MStream

    stream = Quilt1MStream(["unused.tar"])
    image = write.image_bytes("JPEG")
    good = {"caption": "HER2/neu", "image_path": "a.jpg", "image_id": 4}
    item = stream.decode({"__key__": "000000001", "jpg": image, "json": json.dumps(good).encode()})
    assert item["image_id"] == 4 and item["text_input"] == "HER2/neu" and item["image_path"] == "a.jpg"
    bad_json = stream.decode({"__key__": "000000002", "jpg": image, "json": b"{not json"})
    assert bad_json.path == "000000002" and "malformed JSON" in bad_json.reason
    no_caption = stream.decode({"__key__": "3", "jpg": image, "json": json.dumps({**good, "caption": " "}).encode()})
    assert no_caption == SkippedSample("a.jpg", "no caption: neither a 'caption' text in 3.json nor a non-empty 3.txt")
    no_image = stream.decode({"__key__": "4", "json": json.dumps(good).encode()})
    assert no_image == SkippedSample("a.jpg", "no image bytes")
    with pytest.raises(DataError, match="a.jpg: no caption"):
        Quilt1MStream(["unused.tar"], strict=True).decode({"__key__": "3", "json": json.dumps({**good, "caption": ""}).encode()})
