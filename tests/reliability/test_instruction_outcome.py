"""An instruction run that produced nothing, or whose captions mostly got no usable Q&A pair (a
model that ignores the requested format), exits 1 with one line saying so, not 0."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def chat_server():
    """The instruction tests' loopback chat-completions server (tests/instructions/conftest.py)."""
    spec = importlib.util.spec_from_file_location("instruction_server", REPO / "tests" / "instructions" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    server = module.FakeChatServer()
    yield server
    server.stop()


def generate(chat_server, tmp_path: Path, captions: list[str]) -> int:
    from lavis.instructions.cli import main

    path = tmp_path / "captions.csv"
    path.write_text("caption,image_path\n" + "".join(f'"{c}",tile_{i}.png\n' for i, c in enumerate(captions)))
    return main(["--captions", str(path), "--out", str(tmp_path / "out"), "--mode", "generate", "--base-url",
                 chat_server.url, "--workers", "2", "--price-in", "1", "--price-out", "1", "--no-progress"])


def test_a_run_in_which_every_caption_failed_exits_1(chat_server, tmp_path, capsys):
    chat_server.default = "garbage"  # "I am sorry, I cannot help with that request." to every request
    assert generate(chat_server, tmp_path, [f"Glands in tile #{i}." for i in range(4)]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"0 instructions {{}} in {tmp_path / 'out'}")
    assert captured.err.splitlines() == [
        "ERROR: no instructions were produced from 4 captions (failures by reason: unparseable: 4)"]


def test_a_run_in_which_most_captions_failed_exits_1(chat_server, tmp_path, capsys):
    garbage = "[faults: garbage, garbage, garbage]"  # every reply of these captions (with 2 parse retries)
    captions = [f"Glands in tile #0 {garbage}.", f"Nests in tile #1 {garbage}.", f"Stroma in tile #2 {garbage}.",
                "Necrosis in tile #3."]
    assert generate(chat_server, tmp_path, captions) == 1
    assert capsys.readouterr().err.splitlines() == [
        "ERROR: 3 of the 4 captions answered in this run gave no usable Q&A pair, more than --max-failed-share 0.5 "
        "(failures by reason: unparseable: 3); is the model following the prompt? See raw.jsonl"]
