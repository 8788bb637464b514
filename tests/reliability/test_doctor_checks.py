"""The doctor verifies what the run will load, not only that a file exists: a safetensors file
whose data is cut short, a ``.pth`` holding more than tensors and a truncated encoder file FAIL,
as ``train.py`` / ``evaluate.py`` would refuse them; and its own ``--json`` is checked first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file


class RunsCode:
    """Unpickling this calls ``os.mkdir(marker)``: code run by loading, as a malicious ``.pth`` does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def truncated_safetensors(path: Path) -> Path:
    save_file({"weight": torch.zeros(64, 64)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:-1000])  # the header (tensor names and offsets) intact, the data cut short
    return path


def malicious_pth(path: Path) -> Path:
    torch.save({"weight": torch.zeros(4), "payload": RunsCode(path.parent / "code-ran")}, path)
    return path


def doctor(cfg: Path, *args: str, capsys) -> tuple[int, list[str]]:
    from lavis.apps.doctor.__main__ import main

    code = main(["--cfg-path", str(cfg), *args])
    return code, capsys.readouterr().out.splitlines()


def line(lines: list[str], check: str) -> list[str]:
    """[verdict, detail] of the report line for ``check``."""
    row = next(row for row in lines if row.startswith(f"{check}  "))
    return row[len(check):].split(None, 1)


@pytest.mark.parametrize("make, reason", [
    (truncated_safetensors, "not a valid safetensors file (Error while deserializing header: incomplete metadata, "
                            "file not fully covered)"),
    (malicious_pth, "it holds Python objects besides tensors (Trying to load unsupported GLOBAL posix.mkdir whose "
                    "module posix is blocked), which weights-only loading refuses"),
], ids=["truncated_safetensors", "malicious_pth"])
def test_a_checkpoint_the_run_would_refuse_fails_the_doctor(make, reason, toy_run, tmp_path, capsys):
    name = "ckpt.safetensors" if make is truncated_safetensors else "ckpt.pth"
    checkpoint = make(tmp_path / name)
    code, lines = doctor(toy_run(), "--checkpoint", str(checkpoint), capsys=capsys)
    assert code == 1 and lines[-1].startswith("FAILED")
    verdict, detail = line(lines, "checkpoint")
    assert verdict == "FAIL" and detail.startswith(f"model.checkpoint: {checkpoint} is unreadable or truncated: {reason}")
    assert not (tmp_path / "code-ran").exists()  # checked without running what the file holds


def test_a_truncated_image_encoder_file_fails_the_doctor(tmp_path, minilm_dir, capsys):
    from lavis.models.vision.base import VISION_ENCODERS

    section = yaml.safe_load((Path(__file__).parents[2] / "configs/models/blip2/tiny.yaml").read_text())["model"]["vision"]
    encoder = VISION_ENCODERS.get(section["name"]).from_config({**section, "pretrained": None})
    weights = tmp_path / "eva_vit_tiny.pth"
    torch.save(encoder.state_dict(), weights)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a download cut off midway
    cfg = tmp_path / "stage1.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"arch": "blip2", "model_type": "tiny", "vision": {"pretrained": str(weights)},
                  "qformer": {"tokenizer": str(minilm_dir)}},
        "datasets": {"toy_regression": {}},
        "run": {"task": "image_text_pretrain", "imports": ["toy_components"], "output_dir": str(tmp_path / "out"),
                "num_workers": 0, "device": "cpu"},
    }))
    code, lines = doctor(cfg, capsys=capsys)
    assert code == 1
    assert line(lines, "vision weights") == [
        "FAIL", f"model.vision.pretrained: {weights} is unreadable or truncated: ValueError: the file is truncated "
                "(a torch.save zip without its central directory)"]


def test_json_naming_a_directory_is_refused_before_the_checks(toy_run, tmp_path, capsys):
    from lavis.apps.doctor.__main__ import main

    (tmp_path / "reports").mkdir()
    assert main(["--cfg-path", str(toy_run()), "--json", str(tmp_path / "reports")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no check ran
    assert captured.err.splitlines() == [f"error: --json {tmp_path / 'reports'} is a directory; name a file (in it, or elsewhere)"]
