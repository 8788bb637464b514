"""Every value is checked where it is parsed, with one line naming the option or key and the range:
generation options (one parser for chat, predict and serve), slide tiles, ports, worker counts.
Those that need no model fail before it loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

NO_MODEL = "never-loaded"  # the value is refused before --model is read


def one_line(capsys) -> str:
    """The one line the command printed on stderr (besides transformers' weight-loading progress bar)."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.strip().splitlines() if not line.startswith("Loading weights")]
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.fixture
def quilt(tmp_path, write_quilt_vqa) -> Path:
    write_quilt_vqa(tmp_path / "quilt_vqa", {}, num_questions=2)
    return tmp_path / "quilt_vqa"


@pytest.mark.parametrize("command", ["predict", "chat"])
def test_a_negative_beam_count_is_refused(command, quilt, tmp_path, capsys):
    if command == "predict":
        from lavis.apps.predict import main

        args = ["--questions", str(quilt / "quiltvqa_test_wo_ans.jsonl"), "--out", str(tmp_path / "a.jsonl")]
    else:
        from lavis.apps.chat import main

        args = ["--image", str(quilt / "images" / "img0.png"), "--question", "Is there necrosis?"]
    assert main(["--model", NO_MODEL, *args, "--generation", "num_beams=-2"]) == 2
    assert one_line(capsys) == "error: config section '--generation': 'num_beams' must be an integer >= 1, got -2"
    assert not (tmp_path / "a.jsonl").exists()


def test_a_negative_sampling_temperature_is_refused(quilt, capsys):
    from lavis.apps.chat import main

    assert main(["--model", NO_MODEL, "--image", str(quilt / "images" / "img0.png"), "--question", "Is it dense?",
                 "--generation", "use_nucleus_sampling=true", "temperature=-5"]) == 2
    assert one_line(capsys) == ("error: config section '--generation': 'temperature' must be > 0 with "
                                "use_nucleus_sampling (or sample nothing: use_nucleus_sampling=false), got -5.0")


def test_more_new_tokens_than_the_model_holds_is_refused_before_generating(tiny_model, quilt, capsys):
    from lavis.apps.chat import main

    assert main(["--model", str(tiny_model), "--image", str(quilt / "images" / "img0.png"), "--question", "Is it dense?",
                 "--generation", "max_new_tokens=100000000"]) == 2
    assert one_line(capsys) == (
        "error: max_new_tokens=100000000 is more than this model can answer with: at most 512 new tokens "
        "(the sequence length T5 was pre-trained with; it has no position table)"
    )


def test_a_zero_tile_is_refused_not_replaced(tmp_path, capsys):
    from lavis.apps.slides.cli import main

    Image.fromarray(np.full((256, 256, 3), 200, np.uint8)).save(tmp_path / "region.png")
    assert main(["--model", NO_MODEL, "--slide", str(tmp_path / "region.png"), "--slide-mpp", "0.5",
                 "--question", "Is there tumour?", "--out", str(tmp_path / "out"), "--tile", "0"]) == 2
    assert one_line(capsys) == "error: --tile must be at least 8 pixels, got 0"
    assert not (tmp_path / "out").exists()


def test_a_negative_port_is_refused(capsys):
    from lavis.apps.serve.__main__ import main

    assert main(["--model", NO_MODEL, "--port", "-5"]) == 2
    assert one_line(capsys) == "error: --port must be a TCP port from 1 to 65535, got -5"


def test_a_negative_worker_count_is_refused(quilt, capsys):
    from lavis.datasets.check.__main__ import main

    assert main(["quilt_vqa", "--root", str(quilt), "--workers", "-3"]) == 2
    assert one_line(capsys) == "error: --workers must be >= 0 (0: decode in this process), got -3"
    assert not (quilt / "check.json").exists()
