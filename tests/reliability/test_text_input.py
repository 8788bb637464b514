"""Text typed into a command that is not UTF-8 (a terminal set to Latin-1) is one line naming the
byte and where it stands; the interactive chat says so and goes on with the same conversation."""

from __future__ import annotations

import io
import sys

LATIN1 = "the question is not UTF-8 text (byte 0xe9 at byte offset 10); set the terminal to UTF-8 or retype it"


def test_a_latin1_line_in_the_interactive_chat_keeps_the_conversation(tiny_model, write_quilt_vqa, tmp_path,
                                                                       monkeypatch, capsys):
    from lavis.apps.chat import main

    write_quilt_vqa(tmp_path / "quilt_vqa", {}, num_questions=1)
    typed = b"Is the tissue dense?\nIs there n\xe9crosis?\nWhat is shown?\n"  # the second line typed in Latin-1
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(typed), encoding="utf-8", errors="strict"))
    code = main(["--model", str(tiny_model), "--image", str(tmp_path / "quilt_vqa" / "images" / "img0.png"),
                 "--generation", "max_new_tokens=3", "num_beams=1"])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err
    assert [line for line in captured.err.splitlines() if line.startswith("error:")] == [f"error: {LATIN1}"]
    assert captured.out.count("model> ") == 2  # the questions before and after it were answered


def test_a_latin1_question_on_the_command_line_is_one_line(tiny_model, write_quilt_vqa, tmp_path, capsys):
    from lavis.apps.chat import main

    write_quilt_vqa(tmp_path / "quilt_vqa", {}, num_questions=1)
    latin1 = b"Is there n\xe9crosis?".decode("utf-8", "surrogateescape")  # how Python hands such argv bytes over
    assert main(["--model", str(tiny_model), "--image", str(tmp_path / "quilt_vqa" / "images" / "img0.png"),
                 "--question", latin1]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: {LATIN1}"
