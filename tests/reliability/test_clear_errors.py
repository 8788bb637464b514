"""Bad inputs that used to end in a traceback now end in one line naming the file, key or URL."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

LATIN1_CAPTION = "Adenocarcinoma in situ, caf\xe9-au-lait spots on the skin.".encode("latin-1")  # byte 0xe9


def quilt_csv(root: Path) -> Path:
    """A Quilt-1M lookup CSV whose second data row was saved in Latin-1 (a spreadsheet export)."""
    (root / "quilt_1m").mkdir(parents=True)
    header = b"caption,image_path,subset,split,pathology,roi_text,noisy_text,corrected_text,med_umls_ids,magnification,height,width\n"
    good = b"Glands lined by columnar epithelium.,a.png,quilt,train,[],[],x,x,[],0,64,64\n"
    bad = LATIN1_CAPTION.replace(b",", b";") + b",b.png,quilt,train,[],[],x,x,[],0,64,64\n"
    (root / "quilt_1M_lookup.csv").write_bytes(header + good + bad)
    return root / "quilt_1M_lookup.csv"


def test_a_latin1_quilt_csv_names_the_file_and_line(toy_run, tmp_path, capsys):
    from lavis.cli import main

    csv = quilt_csv(tmp_path / "quilt")
    cfg = toy_run(data={"storage": str(tmp_path / "quilt"), "splits": {"train": "train", "val": None}},
                  dataset="quilt1m", arch="toy_image_vqa")
    assert main("train", argv=["--cfg-path", str(cfg)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {csv}: line 3: not UTF-8 text (byte 0xe9 at column 28, offset 220); save it as UTF-8, "
        "e.g. iconv -f latin1 -t utf-8 quilt_1M_lookup.csv > utf8_quilt_1M_lookup.csv"
    )


def test_a_latin1_captions_csv_names_the_file_and_line(tmp_path, capsys):
    from lavis.instructions.cli import main

    captions = tmp_path / "captions.csv"
    captions.write_bytes(b"caption,image_path\n" + LATIN1_CAPTION.replace(b",", b";") + b",a.png\n")
    assert main(["--captions", str(captions), "--out", str(tmp_path / "out"), "--mode", "template", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"ERROR: {captions}: line 2: not UTF-8 text (byte 0xe9 at column 28, offset 46); save it as UTF-8, "
        "e.g. iconv -f latin1 -t utf-8 captions.csv > utf8_captions.csv"
    )


def test_an_empty_instructions_file_names_the_file(toy_run, tmp_path, capsys):
    from lavis.cli import main

    (tmp_path / "clover" / "quilt_1m").mkdir(parents=True)
    (tmp_path / "clover" / "instructions.jsonl").write_text("")
    cfg = toy_run(data={"storage": str(tmp_path / "clover")}, dataset="clover_instructions", arch="toy_image_vqa")
    assert main("train", argv=["--cfg-path", str(cfg)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'clover' / 'instructions.jsonl'}: no samples for split 'train' of "
        "datasets.clover_instructions (the file holds no records, or all were filtered out)"
    )


def test_strict_mode_inside_dataloader_workers_is_one_line(toy_run, tmp_path, write_quilt_vqa, entry):
    root = tmp_path / "quilt_vqa"
    write_quilt_vqa(root, {4: "missing"})
    data = {"storage": str(root), "split": "train", "strict": True,
            "vis_processor": {"train": {"name": "pathology_image_eval", "image_size": 32}}}
    cfg = toy_run({"num_workers": 2, "batch_size_train": 2, "max_epoch": 1}, data=data, dataset="quilt_vqa",
                  arch="toy_image_vqa")
    proc = entry(["train.py", "--cfg-path", str(cfg)])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"error: {root / 'images' / 'img4.png'}: file not found (strict mode: set strict: false to skip such samples)"
    )


def test_cuda_without_a_gpu_is_a_config_error(toy_run, entry):
    proc = entry(["train.py", "--cfg-path", str(toy_run({"device": "cuda"}))], env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(
        "error: run.device=cuda, but torch sees no CUDA GPU here (CUDA_VISIBLE_DEVICES=''"
    )
    assert proc.stderr.strip().endswith("use run.device=cpu, or auto to take a GPU when there is one")


@pytest.mark.parametrize("name, content, reason", [
    ("tile.pth", b"\x89PNG\r\n\x1a\n" + bytes(range(200)),
     "it is neither a safetensors file nor a torch.save'd state dict (.pth / .bin)"),
    ("weights.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + bytes(64), "not a valid safetensors file ("),
], ids=["png_as_pth", "broken_safetensors"])
def test_a_random_file_as_checkpoint_says_what_it_is_not(tmp_path, name, content, reason):
    from lavis.common.errors import CheckpointError
    from lavis.models.blip2.checkpoint import (
        read_state_dict,  # what --checkpoint / model.checkpoint reads with
    )

    (tmp_path / name).write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(tmp_path / name)
    message = str(err.value)
    assert message.startswith(f"cannot read '{tmp_path / name}' as a weights file: {reason}")
    assert "weights_only" not in message and "\n" not in message  # torch's essay is gone


def test_convert_with_a_missing_src_says_so(tmp_path, capsys):
    from lavis.models.convert import main

    assert main(["--from", "ours", "--to", "hf", "--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.strip() == f"error: --src {tmp_path / 'nowhere'}: no such file or folder"


def test_a_refused_connection_names_the_url_and_stops_after_the_retry_budget(tmp_path, free_port, capsys):
    from lavis.instructions.cli import main

    captions = tmp_path / "captions.csv"
    captions.write_text("caption,image_path\n" + "".join(f"Glands in tile {i}.,t{i}.png\n" for i in range(12)))
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    started = time.monotonic()
    code = main(["--captions", str(captions), "--out", str(tmp_path / "out"), "--mode", "generate", "--base-url", url,
                 "--workers", "2", "--max-retries", "2", "--backoff-base", "0.01", "--price-in", "1", "--price-out", "1",
                 "--no-progress"])
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == 1
    assert f"stopped: fatal: cannot connect to {url}/ after 3 attempt(s): connection_error: " in captured.out
    assert "Connection refused" in captured.out and "is the server running, and is --base-url right?" in captured.out
    # fail fast: only the captions already in flight (one per worker) tried, not one after another
    assert len(re.findall(r"left pending for the next run", captured.err)) <= 2
    assert elapsed < 60
