"""Crash safety: SIGKILL mid-run then rerun equals an uninterrupted run; torn lines are repaired."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lavis.instructions.cli import main
from lavis.instructions.outputs import INSTRUCTIONS_FILE
from lavis.instructions.store import RawStore

CAPTIONS = [f"Glands #{i} in sheets." for i in range(30)]


def _args(server, captions: Path, out: Path) -> list[str]:
    return [
        "--captions", str(captions), "--out", str(out), "--mode", "both", "--base-url", server.url,
        "--api-key-env", "CLOVER_TEST_KEY", "--workers", "2", "--backoff-base", "0.01",
    ]


def _records(out: Path) -> dict[str, dict]:
    lines = (out / "raw.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    ids = [r["caption_id"] for r in records]
    assert len(ids) == len(set(ids)), "duplicate caption id in raw.jsonl"
    return {r["caption_id"]: r for r in records}


@pytest.mark.slow
def test_sigkill_then_rerun_equals_an_uninterrupted_run(chat_server, api_key, quilt_csv, tmp_path, repo_root):
    captions = quilt_csv(CAPTIONS)
    chat_server.delay = 0.1  # 30 captions on 2 workers: about 1.5 s of requests
    killed = tmp_path / "killed"
    logs = tmp_path / "logs"
    process = _start(chat_server, captions, killed, logs, repo_root)
    _wait_for_records(process, killed / "raw.jsonl", 6)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    partial = _records(killed)
    assert 6 <= len(partial) < len(CAPTIONS)
    assert not (killed / INSTRUCTIONS_FILE).exists()  # killed before the export step

    requests_before = len(chat_server.requests)
    assert main(_args(chat_server, captions, killed)) == 0  # resume
    resumed_requests = len(chat_server.requests) - requests_before
    assert resumed_requests <= len(CAPTIONS) - len(partial) + 2  # at most the in-flight ones are redone

    fresh = tmp_path / "fresh"
    assert main(_args(chat_server, captions, fresh)) == 0
    assert _records(killed) == _records(fresh)
    assert (killed / INSTRUCTIONS_FILE).read_bytes() == (fresh / INSTRUCTIONS_FILE).read_bytes()
    for folder in (killed, fresh, logs):
        for path in folder.iterdir():
            assert api_key not in path.read_text(errors="replace"), path


def _start(server, captions: Path, out: Path, logs: Path, repo_root: Path) -> subprocess.Popen:
    """The command line in a child process, its stdout/stderr kept in ``logs``."""
    logs.mkdir(exist_ok=True)
    with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
        return subprocess.Popen(
            [sys.executable, str(repo_root / "generate_instructions.py"), *_args(server, captions, out)],
            cwd=repo_root, env=os.environ.copy(), stdout=stdout, stderr=stderr,
        )


def _wait_for_records(process: subprocess.Popen, raw: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if raw.exists() and raw.read_text().count("\n") >= count:
            return
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be interrupted"


@pytest.mark.slow
def test_ctrl_c_finishes_requests_in_flight_and_exports(chat_server, api_key, quilt_csv, tmp_path, repo_root):
    captions = quilt_csv(CAPTIONS)
    chat_server.delay = 0.1
    out = tmp_path / "run"
    process = _start(chat_server, captions, out, tmp_path / "logs", repo_root)
    _wait_for_records(process, out / "raw.jsonl", 4)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    records = _records(out)
    requested = {r["caption"] for r in chat_server.requests}
    assert len(records) == len(requested) < len(CAPTIONS)  # every request sent was finished and written
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["stopped"] == "interrupted" and summary["run"]["pending_after_run"] == len(CAPTIONS) - len(records)
    assert summary["counts"]["by_source"]["generated"] == 3 * len(records)
    progress = (tmp_path / "logs" / "stderr").read_text()
    assert "cost $" in progress and "interrupted: finishing" in progress  # the bar shows the running total
    assert api_key not in progress


def test_template_output_is_byte_identical_for_a_seed(quilt_csv, tmp_path):
    captions = quilt_csv([f"caption {i}" for i in range(25)])
    outputs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        out = tmp_path / name
        assert main(["--captions", str(captions), "--out", str(out), "--mode", "template", "--seed", str(seed)]) == 0
        outputs.append(((out / INSTRUCTIONS_FILE).read_bytes(), (out / "instructions_llava.json").read_bytes()))
    assert outputs[0] == outputs[1] and outputs[0] != outputs[2]
    assert not (tmp_path / "a" / "raw.jsonl").exists()


def test_torn_last_line_is_cut_and_ids_never_repeat(tmp_path, caplog):
    path = tmp_path / "raw.jsonl"
    good = json.dumps({"caption_id": "a", "pairs": []}) + "\n"
    path.write_text(good + '{"caption_id": "b", "pai')  # a writer killed mid-line
    with RawStore(path) as store:
        assert "a" in store and "b" not in store
        store.append({"caption_id": "b", "pairs": []})
        with pytest.raises(ValueError, match="already in"):
            store.append({"caption_id": "a", "pairs": []})
    assert [json.loads(line)["caption_id"] for line in path.read_text().splitlines()] == ["a", "b"]
    assert "removed an incomplete last line" in caplog.text


def test_corrupt_middle_line_is_an_error_naming_it(tmp_path):
    from lavis.common.errors import DataError

    path = tmp_path / "raw.jsonl"
    path.write_text('{"caption_id": "a"}\nnot json\n{"caption_id": "c"}\n')
    with pytest.raises(DataError, match=r"raw\.jsonl: line 2, column 1: invalid JSON"):
        RawStore(path)
