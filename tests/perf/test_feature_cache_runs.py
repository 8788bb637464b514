"""The feature cache in runs: which splits the runner caches, the same training losses with and
without it, and one cache built by two ranks through the build command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from lavis.common.errors import ConfigError
from lavis.datasets.datasets.sample_table import SampleTable
from lavis.datasets.feature_cache import CachedFeatures, FeatureStore, apply_feature_cache, is_deterministic

REPO = Path(__file__).resolve().parents[2]


def fake_cfg(tmp_path, mode: str, evaluate: bool = False) -> types.SimpleNamespace:
    run = types.SimpleNamespace(
        feature_cache=mode, feature_cache_dir=str(tmp_path / "cache"), feature_cache_dtype="fp16",
        evaluate=evaluate, train_splits=["train"], valid_splits=["val"], test_splits=[],
        batch_size_eval=4, num_workers=0, progress_bar=False,
    )
    eval_spec = {"name": "pathology_image_eval", "image_size": 56}
    return types.SimpleNamespace(run=run, datasets={"d": types.SimpleNamespace(vis_processor={"eval": eval_spec})})


@pytest.fixture
def two_splits(tmp_path, image_table, write_images, eval_processor):
    from lavis.processors.image_processors import PathologyImageTrain

    names = write_images(tmp_path / "images", 4)
    augment = PathologyImageTrain.from_config({"name": "pathology_image_train", "image_size": 56})
    return {"d": {"train": image_table(names[:3], augment), "val": image_table(names[3:], eval_processor())}}


def test_auto_caches_fixed_transforms_and_on_trains_on_eval_features(tmp_path, tiny_model, two_splits):
    assert not is_deterministic(two_splits["d"]["train"].vis_processor)
    assert is_deterministic(two_splits["d"]["val"].vis_processor)
    auto = apply_feature_cache(two_splits, tiny_model, fake_cfg(tmp_path, "auto"), tmp_path)
    assert isinstance(auto["d"]["train"], SampleTable) and isinstance(auto["d"]["val"], CachedFeatures)
    on = apply_feature_cache(two_splits, tiny_model, fake_cfg(tmp_path, "on"), tmp_path)
    assert isinstance(on["d"]["train"], CachedFeatures)
    assert on["d"]["train"].store.identity["transform"]["class"].endswith("PathologyImageEval")
    assert on["d"]["train"].store.dir == on["d"]["val"].store.dir  # same encoder and transform: one store
    evaluation = apply_feature_cache(two_splits, tiny_model, fake_cfg(tmp_path, "on", evaluate=True), tmp_path)
    assert isinstance(evaluation["d"]["train"], SampleTable)  # an evaluation run leaves train alone
    assert apply_feature_cache(two_splits, tiny_model, fake_cfg(tmp_path, "off"), tmp_path) is two_splits


def test_models_without_a_frozen_encoder_fall_back_or_fail_clearly(tmp_path, tiny_model, two_splits):
    toy = torch.nn.Linear(2, 2)
    assert apply_feature_cache(two_splits, toy, fake_cfg(tmp_path, "auto"), tmp_path) is two_splits
    with pytest.raises(ConfigError, match="Linear has no frozen image encoder"):
        apply_feature_cache(two_splits, toy, fake_cfg(tmp_path, "on"), tmp_path)
    trainable = type(tiny_model).__new__(type(tiny_model))
    trainable.__dict__.update(tiny_model.__dict__)
    trainable._modules = {**tiny_model._modules, "visual_encoder": torch.nn.Linear(2, 2)}
    with pytest.raises(ConfigError, match="image encoder trains"):
        apply_feature_cache(two_splits, trainable, fake_cfg(tmp_path, "on"), tmp_path)


def records(path: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == kind]


def test_training_with_the_cache_follows_the_same_losses(tmp_path, run_yaml):
    from lavis.cli import main

    assert main("train", argv=["--cfg-path", str(run_yaml("plain", feature_cache="off"))]) == 0
    assert not (tmp_path / "cache").exists()
    assert main("train", argv=["--cfg-path", str(run_yaml("cached"))]) == 0
    stores = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert len(stores) == 1 and len(json.loads((stores[0] / "index.json").read_text())["images"]) == 10
    assert (tmp_path / "cache" / "image_hashes.arrow").exists()  # the images' content hashes, shared
    plain = records(tmp_path / "plain" / "metrics.jsonl", "train")
    cached = records(tmp_path / "cached" / "metrics.jsonl", "train")
    assert len(plain) == len(cached) == 6  # 2 epochs x 3 steps, logged every step
    losses = torch.tensor([r["loss"] for r in plain])
    torch.testing.assert_close(torch.tensor([r["loss"] for r in cached]), losses, rtol=2e-3, atol=2e-3)
    # the trajectory moves, so the comparison means something (epoch means: batches are length-grouped,
    # so single steps differ by what they hold, but each epoch holds the same pairs)
    assert losses[3:].mean() < losses[:3].mean()
    val = [records(tmp_path / name / "metrics.jsonl", "eval")[-1]["loss"] for name in ("plain", "cached")]
    assert val[0] == pytest.approx(val[1], rel=2e-3)


def test_two_ranks_build_one_shared_cache_the_run_then_reuses(tmp_path, run_yaml):
    cfg_path = run_yaml("ranks")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "lavis.cli.build_feature_cache", "--cfg-path", str(cfg_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [line for line in proc.stdout.splitlines() if line.startswith("llava_med/train: ")]
    assert len(printed) == 1  # by rank 0 only
    (store_dir,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    index = json.loads((store_dir / "index.json").read_text())
    # train and val share the store (same encoder and transform): each rank wrote a segment per split
    assert len(index["images"]) == 10
    assert sorted(s["file"][-6:] for s in index["segments"]) == ["r0.bin", "r0.bin", "r1.bin", "r1.bin"]
    assert not list(store_dir.glob(".part-*"))

    from lavis.cli import build_parser, load
    from lavis.cli.build_feature_cache import build

    cfg = load(build_parser("test", None).parse_args(["--cfg-path", str(cfg_path)]))
    assert build(cfg) == {"llava_med": {"train": str(store_dir), "val": str(store_dir)}}
    assert json.loads((store_dir / "index.json").read_text())["segments"] == index["segments"]  # nothing new

    from lavis.tasks import TASKS

    torch.manual_seed(cfg.run.seed)  # rank 0's seed: the same random encoder as rank 0 built
    model = TASKS.get(cfg.run.task)(cfg.task).build_model(cfg).eval()
    table = TASKS.get(cfg.run.task)(cfg.task).build_datasets(cfg)["llava_med"]["train"]
    store = FeatureStore(tmp_path / "cache", index["identity"], "fp16")
    from lavis.datasets.feature_cache import fill

    cached = CachedFeatures(table, store, fill(store, table, table.vis_processor, model, num_workers=0))
    for i in range(len(table)):  # rows from both ranks' segments match this process's encoder
        expected = model.encode_image_frozen(table[i]["image"][None])[0]
        torch.testing.assert_close(cached[i]["image_embeds"].float(), expected, rtol=1e-3, atol=2e-3)
