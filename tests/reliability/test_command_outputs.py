"""Where the commands write: a directory named as a file (or a file as a folder) and a read-only
folder fail at start, before a model loads or an image is decoded; a disk that fills up while
writing ends in one line naming the file, with nothing half-written left behind; and convert
writes every file with the mode the umask gives."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

NO_MODEL = "never-loaded"  # refused before --model is read


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def slide(folder: Path) -> Path:
    """A small tissue-coloured region as a plain image (with --slide-mpp: 0.5 um/px)."""
    pixels = np.full((168, 168, 3), 240, np.uint8)
    pixels[8:160, 8:160] = (200, 90, 160)
    Image.fromarray(pixels).save(folder / "region.png")
    return folder / "region.png"


def convert_args(tiny_model: Path, out: Path) -> list[str]:
    return ["--from", "ours", "--to", "hf", "--src", str(tiny_model), "--out", str(out)]


# ---- a file where a folder goes, and the reverse -------------------------------------------------
def test_predict_out_naming_a_directory_is_refused_before_the_model_loads(tmp_path, write_quilt_vqa, capsys):
    from lavis.apps.predict import main

    write_quilt_vqa(tmp_path / "quilt_vqa", {}, num_questions=2)
    (tmp_path / "answers").mkdir()
    assert main(["--model", NO_MODEL, "--questions", str(tmp_path / "quilt_vqa" / "quiltvqa_test_wo_ans.jsonl"),
                 "--out", str(tmp_path / "answers")]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: --out {tmp_path / 'answers'} is a directory; name a file (in it, or elsewhere)"]


def test_convert_out_naming_an_existing_file_is_refused(tmp_path, capsys):
    from lavis.models.convert import main

    (tmp_path / "model.pth").write_bytes(b"the user's own file")
    assert main(convert_args(tmp_path / "src", tmp_path / "model.pth")) == 1
    assert error_lines(capsys.readouterr().err) == [f"error: --out {tmp_path / 'model.pth'} is a file; name a new folder"]
    assert (tmp_path / "model.pth").read_bytes() == b"the user's own file"


# ---- read-only output folders: refused at start ---------------------------------------------------
def test_slides_into_a_read_only_folder_fail_before_the_model_loads(tmp_path, read_only, capsys):
    from lavis.apps.slides.cli import main

    region = slide(tmp_path)
    (tmp_path / "mnt").mkdir()
    read_only(tmp_path / "mnt")
    assert main(["--model", NO_MODEL, "--slide", str(region), "--slide-mpp", "0.5", "--question", "Is there tumour?",
                 "--out", str(tmp_path / "mnt" / "case1")]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: --out: cannot write in {tmp_path / 'mnt'} (where {tmp_path / 'mnt' / 'case1'} would be created): "
        "Read-only file system"]
    assert not (tmp_path / "mnt" / "case1").exists()


def test_check_into_a_read_only_folder_fails_before_decoding(tmp_path, write_quilt_vqa, read_only, capsys):
    from lavis.datasets.check.__main__ import main

    write_quilt_vqa(tmp_path / "quilt_vqa", {})
    read_only(tmp_path / "quilt_vqa")
    assert main(["quilt_vqa", "--root", str(tmp_path / "quilt_vqa"), "--workers", "0"]) == 2
    captured = capsys.readouterr()
    assert error_lines(captured.err) == [
        f"error: --root (where check.json goes; or set --out-dir): cannot write in the folder {tmp_path / 'quilt_vqa'}: "
        "Read-only file system"]
    assert captured.out == ""  # no image was decoded


def test_convert_into_a_read_only_folder_fails_before_the_model_loads(tmp_path, read_only, capsys):
    from lavis.models.convert import main

    (tmp_path / "mnt").mkdir()
    read_only(tmp_path / "mnt")
    assert main(convert_args(tmp_path / "src", tmp_path / "mnt" / "hf")) == 1
    assert error_lines(capsys.readouterr().err) == [
        f"error: --out: cannot write in the folder {tmp_path / 'mnt'}: Read-only file system"]
    assert os.listdir(tmp_path / "mnt") == []


# ---- the disk fills up while writing: one line, nothing half-written ------------------------------
def test_convert_on_a_full_disk_is_one_line_and_leaves_no_folder(tiny_model, tmp_path, disk_full_run):
    out = tmp_path / "hf"
    proc = disk_full_run(["-m", "lavis.models.convert", *convert_args(tiny_model, out)], limit=20_000)
    assert proc.returncode == 1
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write --out {out}: ")
    assert "File too large" in lines[0]
    assert os.listdir(tmp_path) == []  # neither --out nor its temporary folder


def test_slides_on_a_full_disk_are_one_line(tiny_model, tmp_path, disk_full_run):
    out = tmp_path / "case1"
    proc = disk_full_run(["-m", "lavis.slides", "--model", str(tiny_model), "--slide", str(slide(tmp_path)),
                          "--slide-mpp", "0.5", "--question", "Is there tumour?", "--out", str(out), "--workers", "0",
                          "--quiet"], limit=3_000)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}/")
    assert lines[0].endswith(": File too large; rerun the same command to continue once there is room")
    assert not (out / ".lock").exists()  # the folder is free for the rerun
    assert not [p for p in out.rglob("*.tmp")]  # no temporary file left


def test_check_on_a_full_disk_is_one_line_and_writes_no_partial_report(tmp_path, write_quilt_vqa, disk_full_run):
    root = tmp_path / "quilt_vqa"
    write_quilt_vqa(root, {})
    proc = disk_full_run(["-m", "lavis.datasets.check", "quilt_vqa", "--root", str(root), "--workers", "0"], limit=200)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [f"error: {root / 'check.json'}: File too large"]
    assert not (root / "check.json").exists() and not list(root.glob(".check.json.*"))


# ---- one mode for every file convert writes ---------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)], ids=["umask022", "umask077"])
def test_convert_writes_every_file_with_the_umask_mode(umask, mode, tiny_model, tmp_path, capsys):
    from lavis.models.convert import main

    before = os.umask(umask)
    try:
        assert main(convert_args(tiny_model, tmp_path / "hf")) == 0
    finally:
        os.umask(before)
    files = {p.relative_to(tmp_path / "hf"): p.stat().st_mode & 0o777 for p in (tmp_path / "hf").rglob("*") if p.is_file()}
    assert Path("model.safetensors") in files and Path("config.json") in files
    assert set(files.values()) == {mode}, files
    assert (tmp_path / "hf").stat().st_mode & 0o777 == 0o777 & ~umask
