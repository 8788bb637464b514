"""The commands as a user runs them: ``python -m lavis.serve`` in its own process (log lines, key,
shutdown), the host warning, and ``python -m lavis.chat`` once and interactively."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def test_serve_command_logs_one_line_per_request_and_never_the_key(tiny_run, free_port, tiles, user):
    from openai import AuthenticationError, OpenAI

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CLOVER_TEST_KEY": "k-3f9a1c"}
    cmd = [sys.executable, "-m", "lavis.apps.serve", "--model", str(tiny_run), "--port", str(port),
           "--api-key-env", "CLOVER_TEST_KEY", "--max-wait-ms", "5", "--generation", "max_new_tokens=4"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        client = OpenAI(base_url=f"{url}/v1", api_key="k-3f9a1c", max_retries=0, timeout=60)
        model_id = client.models.list().data[0].id
        assert model_id == "run/step_1"
        reply = client.chat.completions.create(model=model_id, messages=[user("is the tissue dense", tiles[0])])
        assert reply.choices[0].message.content and reply.usage.completion_tokens <= 4
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).chat.completions.create(
                model=model_id, messages=[user("is the tissue dense", tiles[0])])
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output[-2000:]
    lines = [line for line in output.splitlines() if "lavis.apps.serve: chat " in line]
    assert len(lines) == 2, output[-2000:]
    assert "chat 200" in lines[0] and "batch=1" in lines[0] and "completion_tokens=" in lines[0] and " ms " in lines[0]
    assert "chat 401" in lines[1] and "invalid_api_key" in lines[1]
    assert "k-3f9a1c" not in output and "base64" not in output and "iVBOR" not in output  # no key, no image bytes
    assert "the page offers 8 example tiles" in output


def test_non_loopback_host_without_key_warns(caplog, tmp_path):
    from lavis.apps.serve.__main__ import is_loopback, main

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("myhost")
    with caplog.at_level("WARNING", logger="lavis.apps.serve"):
        assert main(["--model", str(tmp_path / "missing"), "--host", "0.0.0.0"]) == 2  # never binds: no model
    assert "binding 0.0.0.0 without --api-key-env" in caplog.text
    caplog.clear()
    os.environ["CLOVER_EMPTY_KEY"] = ""
    try:
        assert main(["--model", str(tmp_path / "missing"), "--api-key-env", "CLOVER_EMPTY_KEY"]) == 2
    finally:
        del os.environ["CLOVER_EMPTY_KEY"]


def test_chat_answers_once_and_in_a_conversation(tiny_run, tiles, answerer, decoding, capsys, monkeypatch, questions):
    from PIL import Image

    from lavis.apps.chat import main
    from lavis.common.conversation import Turn

    generation = ["--generation", "num_beams=2", "max_new_tokens=6", "min_new_tokens=1"]
    image = Image.open(tiles[1]).convert("RGB")
    first = answerer.answer([answerer.query(image, questions[0], decoding=decoding)])[0].choices[0]
    assert main(["--model", str(tiny_run), "--image", str(tiles[1]), "--question", questions[0], "--json",
                 *generation]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"answer": first.text, "yes_no": pytest.approx(first.yes_no, abs=1e-5),
                       "finish_reason": first.finish_reason}

    second = answerer.answer([answerer.query(image, questions[2], [Turn(questions[0], first.text)], decoding)])[0]
    after_reset = answerer.answer([answerer.query(image, questions[2], decoding=decoding)])[0]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{questions[0]}\n{questions[2]}\n/reset\n{questions[2]}\n"
                                                 "/image nowhere.png\n/quit\n"))
    assert main(["--model", str(tiny_run), "--image", str(tiles[1]), *generation]) == 0
    captured = capsys.readouterr()
    said = [line.split("model> ", 1)[1] for line in captured.out.splitlines() if "model> " in line]
    assert said[0].startswith(first.text) and "[yes " in said[0]
    assert said[1] == second.choices[0].text and said[2] == after_reset.choices[0].text
    assert "error: nowhere.png: file not found" in captured.err

    assert main(["--model", str(tiny_run), "--image", str(tiles[0].parent / "missing.png"), "--question", "x"]) == 2
    assert "missing.png: file not found" in capsys.readouterr().err
