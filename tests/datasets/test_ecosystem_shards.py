"""Shards as the ecosystem writes them (``webdataset.ShardWriter`` in img2dataset's layout) reach
training with every caption, from local globs, brace ranges, ``file://`` URLs and ``pipe:`` commands."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import webdataset
from torch.utils.data import DataLoader

from lavis.common import dist
from lavis.datasets.collate import collate


def _img2dataset_shards(folder, write) -> tuple[list[str], dict[str, int]]:
    """Two shards: string keys, JSON rows without image_id (img2dataset's url/key/status/caption),
    a PNG and a .jpeg besides JPEGs, a caption only in .txt, one only in the JSON, and two captions
    of one image. Returns (captions, {caption: index of its image})."""
    folder.mkdir()
    captions, image_of = [], {}
    with webdataset.ShardWriter(str(folder / "shard-%06d.tar"), maxcount=5, verbose=0) as sink:
        for i in range(9):
            image = i if i != 8 else 3  # the last sample repeats image 3 with another caption
            caption = f"lymphocytes around tumour nests, field {i}"
            ext, fmt = {1: ("png", "PNG"), 2: ("jpeg", "JPEG")}.get(i, ("jpg", "JPEG"))
            key = f"{i // 5:05d}{i % 5:04d}" if i != 4 else "slide-A_tile-7"
            sample = {"__key__": key, ext: write.image_bytes(fmt, index=image)}
            row = {"url": f"https://example.org/{i}.jpg", "key": key, "status": "success", "width": 16, "height": 16}
            if i != 5:
                sample["txt"] = caption.encode()
            if i in (5, 6):
                row["caption"] = caption
            sample["json"] = json.dumps(row).encode()
            sink.write(sample)
            captions.append(caption)
            image_of[caption] = image
    return captions, image_of


def _stream(build, **section):
    return build("quilt1m_wds", vis_processor={"train": {"image_size": 16}}, **section)["train"]


def test_ecosystem_shards_reach_training_with_every_caption(tmp_path, write, build, monkeypatch):
    captions, image_of = _img2dataset_shards(tmp_path / "eco", write)
    stream = _stream(build, storage=str(tmp_path), shards="eco/shard-{000000..000001}.tar")
    seen, ids = Counter(), {}
    for rank in range(2):  # 2 ranks x 2 workers over 2 shards: samples are dealt, each exactly once
        monkeypatch.setattr(dist, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(dist, "get_world_size", lambda: 2)
        stream.set_epoch(0)
        for batch in DataLoader(stream, batch_size=2, num_workers=2, collate_fn=collate):
            assert "_skipped" not in batch or not batch["_skipped"], batch["_skipped"]
            seen.update(batch["text_input"])
            ids.update(zip(batch["text_input"], list(batch["image_id"])))
    assert seen == Counter(captions)
    by_image = {}
    for caption, image_id in ids.items():
        by_image.setdefault(image_of[caption], set()).add(image_id)
    assert all(len(v) == 1 for v in by_image.values()) and len(by_image) == 8  # one image: one id, ITC positives
    assert len({next(iter(v)) for v in by_image.values()}) == 8


def test_pipe_and_url_shard_specs_need_no_storage(tmp_path, write, build):
    captions, _ = _img2dataset_shards(tmp_path / "eco", write)
    spec = f"pipe:cat {tmp_path}/eco/shard-000000.tar::file://{tmp_path}/eco/shard-000001.tar"
    stream = _stream(build, shards=spec, shuffle=False)
    stream.set_epoch(0)
    assert sorted(item["text_input"] for item in stream) == sorted(captions)


def test_a_shard_spec_that_matches_nothing_names_the_key(tmp_path, build):
    from lavis.common.errors import DataError

    (tmp_path / "eco").mkdir()
    with pytest.raises(DataError, match="datasets.quilt1m_wds.shards': no file matches"):
        _stream(build, storage=str(tmp_path), shards="eco/shard-{000000..000001}.tar")
