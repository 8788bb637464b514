"""The feature cache itself: exact features, skipped images, reuse, invalidation, worker reads."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch.utils.data import DataLoader

from lavis.datasets.bad_data import SkippedSample
from lavis.datasets.collate import collate
from lavis.datasets.feature_cache import (
    NOT_CACHED,
    CachedFeatures,
    FeatureStore,
    encoder_identity,
    fill,
    transform_identity,
)

TOLERANCE = {"fp16": dict(rtol=1e-3, atol=2e-3), "bf16": dict(rtol=8e-3, atol=1.6e-2)}


def store_for(root, model, processor, dtype="fp16") -> FeatureStore:
    return FeatureStore(root, {**encoder_identity(model), "transform": transform_identity(processor)}, dtype)


def count_encodes(monkeypatch, model) -> list[int]:
    """Record the batch size of every ``encode_image_frozen`` call on ``model``."""
    calls: list[int] = []
    original = model.encode_image_frozen

    def counted(images):
        calls.append(images.shape[0])
        return original(images)

    monkeypatch.setattr(model, "encode_image_frozen", counted)
    return calls


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_cached_embeds_equal_the_encoder_output(
    tmp_path, tiny_model, image_table, monkeypatch, dtype, write_images, eval_processor
):
    names = write_images(tmp_path / "images", 5)
    table = image_table(names + names[:2], eval_processor())  # two images appear twice
    store = store_for(tmp_path / "cache", tiny_model, table.vis_processor, dtype)
    calls = count_encodes(monkeypatch, tiny_model)
    cached = CachedFeatures(table, store, fill(store, table, table.vis_processor, tiny_model, batch_size=2, num_workers=0))
    assert sum(calls) == 5  # each unique image encoded once
    for index in range(len(table)):
        plain, item = table[index], cached[index]
        assert set(item) == set(plain) - {"image"} | {"image_embeds"}
        assert item["image_embeds"].dtype == (torch.float16 if dtype == "fp16" else torch.bfloat16)
        expected = tiny_model.encode_image_frozen(plain["image"][None])[0]
        torch.testing.assert_close(item["image_embeds"].float(), expected, **TOLERANCE[dtype])
        assert {k: plain[k] for k in ("image_path", "text_input", "image_id")} == {
            k: item[k] for k in ("image_path", "text_input", "image_id")
        }
    torch.testing.assert_close(cached[5]["image_embeds"], cached[0]["image_embeds"], rtol=0, atol=0)


def test_the_model_gives_the_same_loss_from_cached_embeds(tmp_path, tiny_model, image_table, write_images, eval_processor):
    names = write_images(tmp_path / "images", 3)
    table = image_table(names, eval_processor())
    store = store_for(tmp_path / "cache", tiny_model, table.vis_processor)
    cached = CachedFeatures(table, store, fill(store, table, table.vis_processor, tiny_model, num_workers=0))
    answers = ["yes", "no", "glands"]
    plain = collate([table[i] for i in range(3)])
    fast = collate([cached[i] for i in range(3)])
    with torch.no_grad():
        loss = tiny_model({**plain, "text_output": answers})["loss"]
        cached_loss = tiny_model({**fast, "text_output": answers})["loss"]
    torch.testing.assert_close(cached_loss, loss, rtol=1e-3, atol=1e-3)


def test_unreadable_images_stay_skipped_and_collate_drops_them(
    tmp_path, tiny_model, image_table, write_images, eval_processor
):
    names = write_images(tmp_path / "images", 2)
    (tmp_path / "images" / "broken.png").write_bytes(b"not an image")
    table = image_table([names[0], "missing.png", "broken.png", names[1]], eval_processor())
    store = store_for(tmp_path / "cache", tiny_model, table.vis_processor)
    cached = CachedFeatures(table, store, fill(store, table, table.vis_processor, tiny_model, num_workers=0))
    assert [isinstance(cached[i], SkippedSample) for i in range(4)] == [False, True, True, False]
    assert cached[1].reason == NOT_CACHED and cached[1].path.endswith("images/missing.png")
    batch = collate([cached[i] for i in range(4)])
    assert batch["_size"] == 2 and len(batch["_skipped"]) == 2 and batch["image_embeds"].shape == (2, 17, 32)


def test_a_second_fill_reuses_the_store_and_a_changed_file_is_reencoded(
    tmp_path, tiny_model, image_table, monkeypatch, write_images, eval_processor
):
    names = write_images(tmp_path / "images", 4)
    table = image_table(names, eval_processor())
    store = store_for(tmp_path / "cache", tiny_model, table.vis_processor)
    first = fill(store, table, table.vis_processor, tiny_model, num_workers=0)
    calls = count_encodes(monkeypatch, tiny_model)
    reopened = store_for(tmp_path / "cache", tiny_model, table.vis_processor)
    assert reopened.dir == store.dir and (fill(reopened, table, table.vis_processor, tiny_model) == first).all()
    assert calls == []
    write_images(tmp_path / "images", 1, seed=9, size=(60, 64))  # img000 gets new pixels and size
    again = fill(reopened, table, table.vis_processor, tiny_model, num_workers=0)
    assert calls == [1] and (again[1:] == first[1:]).all() and tuple(again[0]) != tuple(first[0])
    item = CachedFeatures(table, reopened, again)[0]
    expected = tiny_model.encode_image_frozen(table[0]["image"][None])[0]
    torch.testing.assert_close(item["image_embeds"].float(), expected, **TOLERANCE["fp16"])
    assert len(reopened.segments) == 2  # the first build and the one re-encoded image


def test_new_pixels_with_the_same_size_and_mtime_are_reencoded(
    tmp_path, tiny_model, image_table, monkeypatch, eval_processor
):
    """The old key (path, size, mtime) served stale features here; the content key cannot."""
    import io
    import os

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.bmp", "b.bmp"):  # uncompressed: new pixels keep the file size
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / name)
    table = image_table(["a.bmp", "b.bmp"], eval_processor())
    store = store_for(tmp_path / "cache", tiny_model, table.vis_processor)
    first = fill(store, table, table.vis_processor, tiny_model, num_workers=0)
    stale = CachedFeatures(table, store, first)[0]["image_embeds"]

    before = os.stat(folder / "a.bmp")
    with open(folder / "a.bmp", "r+b") as handle:  # rewritten in place, mtime put back
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format="BMP")
        handle.write(buffer.getvalue())
    os.utime(folder / "a.bmp", ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(folder / "a.bmp")
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    calls = count_encodes(monkeypatch, tiny_model)
    reopened = store_for(tmp_path / "cache", tiny_model, table.vis_processor)
    again = fill(reopened, table, table.vis_processor, tiny_model, num_workers=0)
    assert calls == [1] and tuple(again[0]) != tuple(first[0]) and tuple(again[1]) == tuple(first[1])
    fresh = CachedFeatures(table, reopened, again)[0]["image_embeds"]
    expected = tiny_model.encode_image_frozen(table[0]["image"][None])[0]
    torch.testing.assert_close(fresh.float(), expected, **TOLERANCE["fp16"])
    assert not torch.allclose(fresh.float(), stale.float(), atol=1e-2)


def test_two_data_sets_with_the_same_relative_paths_keep_their_own_features(
    tmp_path, tiny_model, monkeypatch, write_images, eval_processor
):
    import pyarrow as pa

    from lavis.datasets.datasets.sample_table import SampleTable

    tables = []
    for seed, site in enumerate(("site_a", "site_b")):
        names = write_images(tmp_path / site, 2, seed=seed)  # img000.jpg, img001.png in both
        columns = {"image_path": names, "text_input": ["q", "q"]}
        tables.append(SampleTable(pa.table(columns), tmp_path / site, vis_processor=eval_processor()))
    store = store_for(tmp_path / "cache", tiny_model, tables[0].vis_processor)
    calls = count_encodes(monkeypatch, tiny_model)
    locations = [fill(store, table, table.vis_processor, tiny_model, num_workers=0) for table in tables]
    assert sum(calls) == 4  # the second data set's same-named files were encoded, not reused
    for table, where in zip(tables, locations):
        cached = CachedFeatures(table, store, where)
        for i in range(2):
            expected = tiny_model.encode_image_frozen(table[i]["image"][None])[0]
            torch.testing.assert_close(cached[i]["image_embeds"].float(), expected, **TOLERANCE["fp16"])


def test_encoder_weights_config_and_transform_each_key_their_own_store(tmp_path, tiny_model, eval_processor):
    processor = eval_processor()
    base = store_for(tmp_path, tiny_model, processor).dir
    retrained = copy.deepcopy(tiny_model)
    with torch.no_grad():
        retrained.visual_encoder.blocks[1].mlp.fc2.weight.mul_(1.01)
    assert store_for(tmp_path, retrained, processor).dir != base
    reconfigured = copy.deepcopy(tiny_model)
    reconfigured.cfg = dataclasses.replace(tiny_model.cfg, vision={**tiny_model.cfg.vision, "precision": "bf16"})
    assert store_for(tmp_path, reconfigured, processor).dir != base
    assert store_for(tmp_path, tiny_model, eval_processor(mean=(0.5, 0.5, 0.5))).dir != base
    assert store_for(tmp_path, tiny_model, processor, dtype="bf16").dir != base
    assert store_for(tmp_path, copy.deepcopy(tiny_model), eval_processor()).dir == base  # same everything
    # where the weights were read from does not matter (they are hashed in full) ...
    moved = copy.deepcopy(tiny_model)
    moved.cfg = dataclasses.replace(tiny_model.cfg, vision={**tiny_model.cfg.vision, "pretrained": "/elsewhere.pth"})
    assert store_for(tmp_path, moved, processor).dir == base
    # ... nor does ln_vision: the cache holds the encoder output before it (ln_vision trains)
    new_ln = copy.deepcopy(tiny_model)
    with torch.no_grad():
        new_ln.ln_vision.bias.add_(0.1)
    assert store_for(tmp_path, new_ln, processor).dir == base


@pytest.mark.parametrize("tensor", ["blocks.1.mlp.fc2.weight", "pos_embed", "blocks.0.attn.q_bias"])
def test_one_element_of_one_encoder_tensor_gives_a_new_store(tmp_path, tiny_model, eval_processor, tensor):
    """Every value of every encoder tensor is hashed (a strided sample would miss element 1 of a
    4,096-element matrix)."""
    processor = eval_processor()
    base = store_for(tmp_path, tiny_model, processor).dir
    changed = copy.deepcopy(tiny_model)
    with torch.no_grad():
        changed.visual_encoder.get_parameter(tensor).view(-1)[1] += 1e-3
    assert store_for(tmp_path, changed, processor).dir != base


def test_code_changes_give_a_new_store(tmp_path, tiny_model, eval_processor, monkeypatch):
    """The identity carries a version of the encoder's and the transform's source code."""
    import lavis.datasets.feature_store as feature_store

    processor = eval_processor()
    base = store_for(tmp_path, tiny_model, processor)
    assert len(base.identity["code"]) == 64 and len(base.identity["transform"]["code"]) == 64
    seen = []

    def edited(objects, follow):
        seen.append(tuple(follow))
        return "0" * 64

    monkeypatch.setattr(feature_store, "source_digest", edited)
    assert store_for(tmp_path, tiny_model, processor).dir != base.dir
    assert ("lavis.models.vision",) in seen and ("lavis.processors", "lavis.datasets.image_io") in seen


def test_the_model_reads_cached_features_through_its_current_ln_vision(
    tmp_path, tiny_model, image_table, write_images, eval_processor
):
    """ln_vision trains, so the cache must hold what comes before it: after ln_vision changes,
    the cached path still gives the same loss as the pixel path."""
    names = write_images(tmp_path / "images", 3)
    table = image_table(names, eval_processor())
    model = copy.deepcopy(tiny_model)
    store = store_for(tmp_path / "cache", model, table.vis_processor)
    cached = CachedFeatures(table, store, fill(store, table, table.vis_processor, model, num_workers=0))
    with torch.no_grad():
        model.ln_vision.weight.mul_(4.0)
        model.ln_vision.bias.add_(1.0)
    answers = ["yes", "no", "glands"]
    with torch.no_grad():
        loss = model({**collate([table[i] for i in range(3)]), "text_output": answers})["loss"]
        cached_loss = model({**collate([cached[i] for i in range(3)]), "text_output": answers})["loss"]
        before = tiny_model({**collate([table[i] for i in range(3)]), "text_output": answers})["loss"]
    torch.testing.assert_close(cached_loss, loss, rtol=1e-3, atol=1e-3)
    assert abs(loss.item() - before.item()) > 1e-3  # the ln_vision change matters


def test_dataloader_workers_read_the_cache(tmp_path, tiny_model, image_table, write_images, eval_processor):
    names = write_images(tmp_path / "images", 6)
    table = image_table(names, eval_processor())
    store = store_for(tmp_path / "cache", tiny_model, table.vis_processor)
    cached = CachedFeatures(table, store, fill(store, table, table.vis_processor, tiny_model, num_workers=2))
    batches = list(DataLoader(cached, batch_size=3, num_workers=2, collate_fn=collate))
    embeds = torch.cat([b["image_embeds"] for b in batches])
    direct = torch.stack([cached[i]["image_embeds"] for i in range(6)])
    assert torch.equal(embeds, direct) and embeds.abs().sum() > 0
