"""A full disk or unwritable output folder is found at start; a failed checkpoint write is one
line and costs nothing already saved; resume passes over unreadable checkpoints and says what a
changed batch size, world size or train set means for the data position."""

from __future__ import annotations

import errno
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

import lavis.common.checkpoint as ckpt_io
from lavis.cli import main

RUN = {"max_epoch": 3, "batch_size_train": 8, "keep_last": 10, "init_lr": 5e-3, "log_freq": 4}
QUICK_RETRY = {"final_save_retry_wait_s": 0.01}


def steps(out: Path) -> list[str]:
    return sorted((p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step_")),
                  key=lambda n: int(n.split("_")[1]))


def train(cfg: Path, *options: str) -> int:
    return main("train", argv=["--cfg-path", str(cfg), *(["--options", *options] if options else [])])


@pytest.fixture
def full_disk_at(monkeypatch):
    """``full_disk_at({"step_16": 1})``: writing those checkpoints runs out of space that many times
    (the weights file is half written, then ENOSPC, as a full disk does)."""

    def install(failures: dict[str, int]) -> list[str]:
        failed: list[str] = []
        real = ckpt_io.save_file

        def save_file(tensors, filename, metadata=None):
            name = Path(filename).parent.name  # the temporary folder ".step_16.xxxx.tmp"
            for step, left in failures.items():
                if name.startswith(f".{step}.") and left > 0:
                    failures[step] -= 1
                    failed.append(step)
                    Path(filename).write_bytes(b"\0" * 1000)
                    raise OSError(errno.ENOSPC, "No space left on device")
            return real(tensors, filename, metadata=metadata)

        monkeypatch.setattr(ckpt_io, "save_file", save_file)
        return failed

    return install


def test_no_room_for_a_checkpoint_stops_the_run_at_start(toy_run, tmp_path, monkeypatch, capsys):
    import lavis.runners.checkpointing as checkpointing

    monkeypatch.setattr(checkpointing.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 900, 900))
    assert train(toy_run(RUN)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: the output folder {tmp_path / 'out'} has 900 B free, but one checkpoint needs about ")
    assert err.endswith("(trainable weights + AdamW state): free space or set run.output_dir elsewhere")
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_a_read_only_output_folder_is_a_clear_error_at_start(toy_run, tmp_path, monkeypatch, capsys):
    import lavis.common.output_lock as output_lock

    real_open = output_lock.os.open

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "out")):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(output_lock.os, "open", read_only)
    assert train(toy_run(RUN)) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: cannot write in the output folder {tmp_path / 'out'}: Read-only file system"
    )


def test_a_failed_checkpoint_write_is_one_line_and_the_run_goes_on(toy_run, tmp_path, full_disk_at, caplog):
    out = tmp_path / "out"
    failed = full_disk_at({"step_16": 1})
    with caplog.at_level(logging.ERROR):
        assert train(toy_run(RUN)) == 0
    assert failed == ["step_16"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"checkpoint step_16 not written: No space left on device; the newest usable checkpoint is "
                      f"{out / 'checkpoints' / 'step_8'}"]
    assert steps(out) == ["step_8", "step_24"]  # the run kept its state and wrote the next one
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]  # no half-written folder
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["type"] == "checkpoint_failed"] == [16]


def test_the_final_checkpoint_is_retried_so_no_training_is_lost(toy_run, tmp_path, full_disk_at, caplog):
    failed = full_disk_at({"step_24": 2})
    with caplog.at_level(logging.ERROR):
        assert train(toy_run({**RUN, **QUICK_RETRY})) == 0
    assert failed == ["step_24", "step_24"]
    assert steps(tmp_path / "out")[-1] == "step_24"
    assert "retrying in 0.01 s (attempt 2 of 3): free space now" in caplog.text


def test_a_final_checkpoint_that_never_fits_is_an_error_naming_the_last_good_one(toy_run, tmp_path, full_disk_at, capsys):
    full_disk_at({"step_24": 3})
    assert train(toy_run({**RUN, **QUICK_RETRY})) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: checkpoint {tmp_path / 'out' / 'checkpoints' / 'step_24'} could not be written: No space left on "
        f"device; the newest usable checkpoint is {tmp_path / 'out' / 'checkpoints' / 'step_16'}"
    )
    assert (tmp_path / "out" / "checkpoints" / "last").resolve().name == "step_16"


@pytest.mark.parametrize("damage, reason", [
    ("empty_state", "cannot read training state '{path}/state.pt': the file is empty (0 bytes): its write never finished"),
    ("truncated_weights", "cannot read weights '{path}/model.safetensors': SafetensorError: "),
], ids=["empty_state", "truncated_weights"])
def test_resume_falls_back_from_an_unreadable_newest_checkpoint(toy_run, tmp_path, caplog, damage, reason):
    out = tmp_path / "out"
    assert train(toy_run({**RUN, "max_epoch": 2})) == 0
    newest = out / "checkpoints" / "step_16"
    if damage == "empty_state":
        (newest / "state.pt").write_bytes(b"")
    else:
        data = (newest / "model.safetensors").read_bytes()
        (newest / "model.safetensors").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.INFO):
        assert train(toy_run(RUN), "run.resume=auto") == 0
    warning = next(r.getMessage() for r in caplog.records if "skipping" in r.getMessage())
    assert warning.startswith(f"run.resume=auto: skipping {newest}, it cannot be read ({reason.format(path=newest)}")
    assert warning.endswith("; trying the previous one")
    assert f"resumed from {out / 'checkpoints' / 'step_8'} at epoch 1, batch 0, step 8" in caplog.text
    assert steps(out)[-1] == "step_24"


def test_resume_with_no_readable_checkpoint_is_an_error(toy_run, tmp_path, capsys):
    assert train(toy_run({**RUN, "max_epoch": 1})) == 0
    (tmp_path / "out" / "checkpoints" / "step_8" / "state.pt").write_bytes(b"")
    assert train(toy_run(RUN), "run.resume=auto") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: run.resume=auto: no checkpoint in {tmp_path / 'out' / 'checkpoints'} can be read (step_8: ")
    assert err.endswith("remove them to start over, or name one with --resume")


def test_resume_with_another_batch_size_converts_the_data_position(toy_run, tmp_path, caplog):
    out = tmp_path / "out"
    assert train(toy_run({**RUN, "max_epoch": 1, "save_every_n_iters": 3})) == 0
    for later in steps(out)[1:]:  # keep step_3: 3 batches of 8 into epoch 0
        shutil.rmtree(out / "checkpoints" / later)
    with caplog.at_level(logging.INFO):
        assert train(toy_run({**RUN, "max_epoch": 1, "batch_size_train": 5}), "run.resume=auto") == 0
    assert (
        f"resume: {out / 'checkpoints' / 'step_3'} was saved with batch_size_train=8 on 1 process(es) (8 samples per "
        "batch), now 5 on 1 (5): epoch 0 continues after sample 20 of its shuffled order (batch 4 of the new size), "
        "so 4 sample(s) are trained on again; an optimizer step now holds a different number of samples, while the "
        "learning-rate schedule still counts steps"
    ) in caplog.text
    assert f"resumed from {out / 'checkpoints' / 'step_3'} at epoch 0, batch 4, step 3" in caplog.text


def test_resume_on_a_changed_train_set_says_the_epoch_order_differs(toy_run, tmp_path, caplog):
    out = tmp_path / "out"
    assert train(toy_run({**RUN, "max_epoch": 1, "save_every_n_iters": 3})) == 0
    for later in steps(out)[1:]:
        shutil.rmtree(out / "checkpoints" / later)
    with caplog.at_level(logging.WARNING):
        assert train(toy_run({**RUN, "max_epoch": 1}, data={"num_train": 80}), "run.resume=auto") == 0
    assert (
        f"the train set had 64 samples when {out / 'checkpoints' / 'step_3'} was saved and has 80 now: epoch 0's "
        "shuffled order is a different one"
    ) in caplog.text


def test_a_best_checkpoint_that_cannot_be_written_keeps_the_record_of_the_one_on_disk(toy_run, tmp_path, full_disk_at):
    """The first validation's best/ fails to write: the run goes on, and the next validation
    writes best/ (it counts as better than nothing on disk, not compared with the lost one)."""
    failed = full_disk_at({"best": 1})
    cfg = toy_run({**RUN, "max_epoch": 2, "valid_splits": ["val"], "test_splits": ["val"]})
    assert train(cfg) == 0
    assert failed == ["best"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["best"]["step"] == 16  # the best on disk, written at the second validation
    saved = torch.load(tmp_path / "out" / "checkpoints" / "best" / "state.pt", weights_only=True)
    assert saved["best"] == summary["best"]
