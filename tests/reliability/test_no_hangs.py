"""Nothing blocks forever: a named pipe given as a config, question, answer, ground-truth, image or
slide file is refused at once, and a download gives up on an endpoint that never answers. Each
command runs under a watchdog (``watched``) that unblocks it and fails the test if it hangs."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

REFUSED = "not a regular file (a FIFO (named pipe)); refused, since reading it could block"


def release(fifo: Path):
    """Open the FIFO's other end and close it: a reader blocked on it gets end-of-file."""

    def unblock() -> None:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass

    return unblock


def ground_truth(folder: Path) -> Path:
    path = folder / "gt.json"
    path.write_text(json.dumps([{"id": "q0", "answer": "yes", "answer_type": "CLOSED", "yes_no_answer": "yes"}]))
    return path


def train(fifo, tmp_path):
    from lavis.cli import main

    return main("train", argv=["--cfg-path", str(fifo)]), f"error: run config {fifo}: {REFUSED}"


def doctor(fifo, tmp_path):
    from lavis.apps.doctor.__main__ import main

    return main(["--cfg-path", str(fifo)]), f"config  FAIL     run config {fifo}: {REFUSED}"


def metrics_predictions(fifo, tmp_path):
    from lavis.metrics.vqa.__main__ import main

    return main(["--protocol", "quilt", "--gt", str(ground_truth(tmp_path)), "--pred", str(fifo)]), \
        f"error: {fifo}: {REFUSED}"


def metrics_ground_truth(fifo, tmp_path):
    from lavis.metrics.vqa.__main__ import main

    return main(["--protocol", "quilt", "--gt", str(fifo), "--pred", str(fifo)]), f"error: {fifo}: {REFUSED}"


def chat_image(fifo, tmp_path):
    from lavis.apps.chat import main

    return main(["--model", str(tmp_path), "--image", str(fifo), "--question", "Is there necrosis?"]), \
        f"error: {fifo}: {REFUSED}"


def slides_slide(fifo, tmp_path):
    from lavis.apps.slides.cli import main

    return main(["--model", str(tmp_path), "--slide", str(fifo), "--question", "Is there tumour?",
                 "--out", str(tmp_path / "out")]), f"error: slide '{fifo}': {REFUSED}"


def predict_questions(fifo, tmp_path):
    from lavis.apps.predict import main

    return main(["--model", str(tmp_path), "--questions", str(fifo), "--out", str(tmp_path / "a.jsonl")]), \
        f"error: --questions {fifo}: {REFUSED}"


@pytest.mark.parametrize("command, name", [
    (train, "run.yaml"), (doctor, "run.yaml"), (metrics_predictions, "answers.jsonl"),
    (metrics_ground_truth, "quiltvqa_test_w_ans.json"), (chat_image, "tile.png"), (slides_slide, "case1.svs"),
    (predict_questions, "quiltvqa_test_wo_ans.jsonl"),
], ids=lambda value: value.__name__ if callable(value) else None)
def test_a_fifo_given_as_a_file_is_refused_at_once(command, name, tmp_path, watched, capsys):
    fifo = tmp_path / name
    os.mkfifo(fifo)  # nothing ever writes to it: a read would block forever
    code, expected = watched(lambda: command(fifo, tmp_path), release(fifo))
    assert code in (1, 2)
    captured = capsys.readouterr()
    shown = captured.out if command is doctor else captured.err
    assert expected in shown.splitlines()
    assert "Traceback" not in captured.err


def test_a_download_from_an_endpoint_that_never_answers_gives_up_and_says_so(tmp_path, watched, monkeypatch, capsys):
    from huggingface_hub import constants

    from lavis.datasets.download.__main__ import main

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are accepted by the kernel; nothing is ever answered
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    started = time.monotonic()
    try:
        code = watched(lambda: main(["pathvqa", "--root", str(tmp_path / "pathvqa"), "--timeout", "1"]), silent.close)
    finally:
        silent.close()
    assert code == 2 and time.monotonic() - started < 30
    captured = capsys.readouterr()
    # what it is doing is on screen before the wait, and the wait ends in one line naming the endpoint
    assert captured.out.splitlines() == [f"pathvqa: flaviagiammarino/path-vqa at main from {endpoint}"]
    assert captured.err.splitlines() == [
        f"error: cannot fetch the file list of flaviagiammarino/path-vqa@main: {endpoint} did not answer within 1 s "
        "(is HF_ENDPOINT right and the network up? --timeout sets the wait)"
    ]
