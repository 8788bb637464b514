"""A disk that fills: a real small file system (a tmpfs the test mounts, :mod:`small_disk`) fills
while a run trains, under the feature cache and under each command's lock. Where mounting is
refused, the same calls raise what the libraries raise on a full disk."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
from pathlib import Path

import pytest
import yaml
from safetensors import SafetensorError

import lavis.common.checkpoint as ckpt_io
from lavis.cli import main
from lavis.runners import Callback, register_callback
from tests.reliability.small_disk import ENOSPC_SAFETENSORS, ENOSPC_TORCH, fill, small_disk

RUN = {"max_epoch": 3, "batch_size_train": 8, "save_every_n_iters": 4, "keep_last": 10, "init_lr": 5e-3,
       "log_freq": 4, "final_save_retry_wait_s": 0.01}


@dataclasses.dataclass
class DiskFillerConfig:
    folder: str = ""
    full_from: int = 10  # the disk fills after this step ...
    free_from: int = 14  # ... and is freed after this one
    leave: int = 0  # bytes left free while full
    mounted: bool = True  # False: no tmpfs here, inject the libraries' exceptions instead


class _Injected:
    full = False
    leave = 0


@register_callback("test_disk_filler")
class DiskFiller(Callback):
    """Fills the run's disk during training, as another job writing to it would."""

    Config = DiskFillerConfig

    def on_step_end(self, runner):
        step = runner.global_step
        if step == self.cfg.full_from:
            _Injected.full, _Injected.leave = True, self.cfg.leave
            if self.cfg.mounted:
                fill(Path(self.cfg.folder), self.cfg.leave)
        elif step == self.cfg.free_from:
            _Injected.full = False
            (Path(self.cfg.folder) / "filler.bin").unlink(missing_ok=True)


def inject_full_disk(monkeypatch) -> None:
    """Without a tmpfs: while "full", the writes fail as safetensors and torch fail on one."""
    real_save_file, real_torch_save = ckpt_io.save_file, ckpt_io.torch.save

    def save_file(tensors, filename, metadata=None):
        if _Injected.full and not _Injected.leave:
            raise SafetensorError(ENOSPC_SAFETENSORS)
        return real_save_file(tensors, filename, metadata=metadata)

    def torch_save(obj, handle):
        if _Injected.full:
            handle.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what the file write raised
            raise RuntimeError(ENOSPC_TORCH)
        return real_torch_save(obj, handle)

    monkeypatch.setattr(ckpt_io, "save_file", save_file)
    monkeypatch.setattr(ckpt_io.torch, "save", torch_save)


@pytest.fixture
def tiny_eval_yaml(tmp_path, minilm_dir, write_quilt_vqa):
    """``tiny_eval_yaml(name, **run)``: the tiny InstructBLIP-T5 evaluating a 12-question QUILT-VQA set."""
    from lavis.models.llm.tiny import save_tiny_t5

    t5 = save_tiny_t5(tmp_path / "t5", ["is there necrosis", "glands lined by columnar epithelium", "yes", "no"] * 5,
                      vocab_size=64)
    write_quilt_vqa(tmp_path / "quilt_vqa", {})

    def make(name: str, **run) -> Path:
        cfg = {
            "model": {"arch": "blip2_t5_instruct", "model_type": "tiny", "qformer": {"tokenizer": str(minilm_dir)},
                      "llm": {"name_or_path": str(t5)}},
            "datasets": {"quilt_vqa": {"storage": str(tmp_path / "quilt_vqa"),
                                       "vis_processor": {"eval": {"name": "pathology_image_eval", "image_size": 56}}}},
            "run": {"task": "vqa", "output_dir": str(tmp_path / name), "device": "cpu", "num_workers": 0,
                    "progress_bar": False, "test_splits": ["test"], "generation": {"num_beams": 1, "max_new_tokens": 3,
                                                                                  "min_new_tokens": 1}, **run},
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


def steps(out: Path) -> list[str]:
    return sorted((p.name for p in (out / "checkpoints").glob("step_*")), key=lambda n: int(n.split("_")[1]))


@pytest.mark.parametrize("leave, failing", [(0, "model.safetensors"), (12288, "state.pt")],
                         ids=["weights_SafetensorError", "state_torch_RuntimeError"])
def test_a_disk_that_fills_during_training_costs_one_checkpoint_and_training_goes_on(
        toy_run, tmp_path, monkeypatch, caplog, leave, failing):
    disk = tmp_path / "disk"
    with small_disk(disk, "4m") as mounted:
        if not mounted:
            inject_full_disk(monkeypatch)
        out = disk / "out"
        filler = {"name": "test_disk_filler", "folder": str(disk), "leave": leave, "mounted": mounted}
        with caplog.at_level(logging.ERROR):
            assert main("train", argv=["--cfg-path", str(toy_run({**RUN, "output_dir": str(out),
                                                                   "callbacks": [filler]}))]) == 0
        # step 12 fell while the disk was full: one line naming the newest usable checkpoint, no temp folder
        errors = [r.getMessage() for r in caplog.records if r.name == "lavis.runners.checkpointing"]
        assert len(errors) == 1 and errors[0].startswith("checkpoint step_12 not written: No space left on device (")
        assert f"/{failing}); the newest usable checkpoint is {out / 'checkpoints' / 'step_8'}" in errors[0]
        assert steps(out) == ["step_4", "step_8", "step_16", "step_20", "step_24"]
        assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
        assert (out / "checkpoints" / "last").resolve().name == "step_24"


def test_the_feature_cache_on_a_full_disk_is_one_line_before_encoding_and_leaves_no_lock(
        tmp_path, monkeypatch, capsys, tiny_eval_yaml):
    import shutil

    cache = tmp_path / "cache_disk"
    with small_disk(cache, "256k") as mounted:
        if mounted:
            fill(cache, leave=16384)  # room for the lock and the image-hash index, not for the features
        else:
            import lavis.datasets.feature_store as store

            monkeypatch.setattr(store.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1 << 18, 1 << 18, 16384))
        cfg = tiny_eval_yaml("eval", feature_cache_dir=str(cache))
        assert main("eval", evaluate_only=True, argv=["--cfg-path", str(cfg)]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"error: feature cache {cache}/") and ": the features of 12 images need 1.0 MiB and " in err
        assert err.endswith(" KiB are free; free space, set run.feature_cache_dir on a larger disk, or run.feature_cache=off")
        assert not list(cache.rglob(".lock")) and not (tmp_path / "eval" / ".lock").exists()


def test_a_feature_segment_that_meets_a_full_disk_is_an_error_not_a_bus_error(tmp_path, monkeypatch):
    """The segment is written with plain writes: a full disk is an OSError there. Through a memory
    map (as before) the same write was a SIGBUS that killed the process."""
    import torch

    from lavis.common.output_lock import OutputFolderError
    from lavis.datasets.feature_store import FeatureStore

    disk = tmp_path / "disk"
    with small_disk(disk, "64k") as mounted:
        store = FeatureStore(disk / "cache", {"tokens": 16, "width": 64}, "fp16")
        if mounted:
            fill(disk, leave=8192)
        else:
            real_open = open

            class Full:
                def __init__(self, handle):
                    self.handle = handle

                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    self.handle.close()

                def write(self, data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            monkeypatch.setattr("builtins.open", lambda path, mode="r", *a, **k: Full(real_open(path, mode, *a, **k))
                                if str(path).endswith(".tmp") else real_open(path, mode, *a, **k))
        batches = ((["a", "b"], torch.randn(2, 16, 64)) for _ in range(8))  # 32 KiB of features
        with pytest.raises(OutputFolderError, match=r"cannot write \.seg-t1\.bin\.tmp: No space left on device; "
                                                    r"free space, set run.feature_cache_dir on a larger disk"):
            store.write_segment(batches, "t1")
        assert not list(store.dir.glob(".seg-*"))  # the partial segment is removed


@pytest.mark.parametrize("command", ["train", "generate_instructions", "download", "predict"])
def test_a_lock_that_cannot_be_written_at_0_bytes_free_is_one_line(toy_run, tmp_path, monkeypatch, capsys, command):
    disk = tmp_path / "disk"
    with small_disk(disk, "64k") as mounted:
        folder = disk / "out"
        folder.mkdir()
        if mounted:
            fill(disk, leave=0)
        else:
            import lavis.common.output_lock as output_lock

            def fdopen(fd, *args, **kwargs):
                os.close(fd)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            monkeypatch.setattr(output_lock.os, "fdopen", fdopen)
        if command == "train":
            assert main("train", argv=["--cfg-path", str(toy_run({"output_dir": str(folder)}))]) == 2
        elif command == "generate_instructions":
            from lavis.instructions.cli import main as generate

            (tmp_path / "captions.csv").write_text("caption,image_path\nGlands in the colon.,a.png\n")
            assert generate(["--captions", str(tmp_path / "captions.csv"), "--out", str(folder), "--mode", "template",
                             "--no-progress"]) == 2
        elif command == "download":
            from lavis.datasets.download.__main__ import main as download

            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
            assert download(["quilt_vqa", "--root", str(folder)]) == 2
        else:
            from lavis.apps.predict import predict
            from lavis.common.output_lock import OutputFolderError

            with pytest.raises(OutputFolderError) as raised:
                predict(None, None, [], folder / "answers.jsonl")
            print(f"error: {raised.value}", file=__import__("sys").stderr)
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error: cannot write the lock file ") and "No space left on device" in err, err
        assert not [p for p in folder.iterdir() if p.name.endswith(".lock")]
