"""One writer per output folder: training runs, evaluations, instruction runs and feature-cache
builds refuse a folder that a live process owns, with a message naming the holder."""

from __future__ import annotations

import types

import pytest
import torch

from lavis.common.output_lock import LOCK_NAME, OutputLockedError

CAPTIONS = (
    "caption,image_path,subset,split\n"
    "Glands lined by columnar epithelium in the colon.,a.png,quilt,train\n"
    "Dense lymphocytes infiltrate the stroma.,b.png,quilt,train\n"
)


def test_a_second_training_run_in_the_same_folder_is_refused(toy_run, tmp_path, spawn, entry, wait_for):
    cfg = toy_run({"max_epoch": 50}, model={"sleep_s": 0.05})
    first = spawn(["train.py", "--cfg-path", str(cfg)])
    wait_for(tmp_path / "out" / LOCK_NAME, first)
    second = entry(["train.py", "--cfg-path", str(cfg)])
    assert second.returncode == 2, second.stderr[-2000:]
    message = second.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and f"in use by another training run (pid {first.pid} on this host" in message
    assert first.poll() is None  # the first run goes on, untouched


def test_an_evaluation_into_a_training_runs_folder_is_refused(toy_run, tmp_path, hold_lock, capsys):
    from lavis.cli import main

    holder = hold_lock(tmp_path / "out", "training run")
    cfg = toy_run({"test_splits": ["test"]}, arch="toy_vqa", dataset="toy_vqa", task="vqa")
    assert main("eval", evaluate_only=True, argv=["--cfg-path", str(cfg)]) == 2
    assert f"in use by another training run (pid {holder.pid}" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*_answers.jsonl"))


def test_a_second_instruction_run_on_one_out_folder_is_refused(tmp_path, hold_lock, capsys):
    from lavis.instructions.cli import main

    (tmp_path / "captions.csv").write_text(CAPTIONS)
    out = tmp_path / "instructions"
    holder = hold_lock(out, "instruction run")
    code = main(["--captions", str(tmp_path / "captions.csv"), "--out", str(out), "--mode", "template", "--no-progress"])
    assert code == 2
    assert f"in use by another instruction run (pid {holder.pid}" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written beside the holder's lock


def test_a_second_feature_cache_build_is_refused(toy_run, tmp_path, hold_lock, capsys):
    from lavis.cli.build_feature_cache import main

    cache = tmp_path / "shared_cache"
    holder = hold_lock(cache, "feature-cache build")
    cfg = toy_run({"feature_cache_dir": str(cache)})
    assert main(["--cfg-path", str(cfg)]) == 2
    assert f"in use by another feature-cache build (pid {holder.pid}" in capsys.readouterr().err


class _FrozenEncoderModel(torch.nn.Module):
    """Enough of a BLIP-2 model for the cache policy to decide it can cache its features."""

    def __init__(self) -> None:
        super().__init__()
        self.visual_encoder = torch.nn.Linear(2, 2).requires_grad_(False)

    def encode_image_frozen(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual_encoder(images)


def test_a_runner_filling_a_shared_cache_that_another_fills_is_refused(tmp_path, hold_lock):
    from lavis.runners.train_data import with_feature_cache

    cache = tmp_path / "shared_cache"
    hold_lock(cache, "feature-cache build")
    cfg = types.SimpleNamespace(run=types.SimpleNamespace(feature_cache="auto", feature_cache_dir=str(cache)))
    with pytest.raises(OutputLockedError, match=r"shared_cache is in use by another feature-cache build"):
        with_feature_cache({}, _FrozenEncoderModel(), cfg, tmp_path / "out", torch.device("cpu"))


def test_an_output_folder_that_cannot_be_created_is_a_clear_error(toy_run, tmp_path, capsys):
    from lavis.cli import main

    (tmp_path / "a_file").write_text("not a folder")
    cfg = toy_run({"output_dir": str(tmp_path / "a_file" / "out")})
    assert main("train", argv=["--cfg-path", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot create the output folder {tmp_path / 'a_file' / 'out'}: Not a directory"
