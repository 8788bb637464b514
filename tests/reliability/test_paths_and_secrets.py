"""Paths named by data stay under their data folder (the builders' rule, ``check_under_root``), for
``lavis.predict``'s question files and for the file list a Hub endpoint returns; and a Hub token
given on the command line is never written to disk."""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECRET = "hf_SENTINEL-token-do-not-write"


@pytest.mark.parametrize("image", ["../../../../etc/hostname", "/etc/hostname"], ids=["parent_parts", "absolute"])
def test_predict_refuses_question_images_outside_the_data_folder(image, tmp_path, write_quilt_vqa, capsys):
    from lavis.apps.predict import main

    root = tmp_path / "quilt_vqa"
    write_quilt_vqa(root, {}, num_questions=2)
    questions = root / "quiltvqa_test_wo_ans.jsonl"
    questions.write_text(questions.read_text() + json.dumps({"question_id": "q9", "image": image, "text": "What?"}) + "\n")
    assert main(["--model", "never-loaded", "--questions", str(questions), "--out", str(tmp_path / "a.jsonl")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {questions}: line 3, field 'image': image path {image!r} escapes the data root {root} (1 such path(s)); "
        "image paths must be relative to the root without '..'"
    ]
    assert not (tmp_path / "a.jsonl").exists()


@pytest.fixture
def hub(monkeypatch):
    """The loopback Hub of the download tests (tests/datasets/fake_hub.py), serving what a test adds."""
    from huggingface_hub import constants

    spec = importlib.util.spec_from_file_location("fake_hub", REPO / "tests" / "datasets" / "fake_hub.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    server = module.FakeHub().start()
    for name, value in (("HF_ENDPOINT", server.endpoint), ("HF_HUB_OFFLINE", "0"), ("TRANSFORMERS_OFFLINE", "0")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield server
    server.stop()


def test_a_hub_file_list_naming_a_path_outside_the_root_is_refused(hub, tmp_path, capsys):
    from lavis.datasets.download.__main__ import main

    escaping = "data/train-/../../../../escaped.parquet"  # matches data/train-*.parquet
    commit = hub.add("flaviagiammarino/path-vqa", {escaping: b"PAR1 not really", "data/test-0.parquet": b"PAR1"})
    root = tmp_path / "a" / "b" / "pathvqa"
    assert main(["pathvqa", "--root", str(root)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: the file list of flaviagiammarino/path-vqa@{commit} from {hub.endpoint}, field 'rfilename': file path "
        f"{escaping!r} escapes the data root {root} (1 such path(s)); file paths must be relative to the root without '..'"
    ]
    assert not any("/resolve/" in entry.path for entry in hub.log)  # nothing was fetched
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []  # nothing written, in or outside the root


def test_a_token_on_the_command_line_is_never_written_to_the_lock(tmp_path, spawn, wait_for, capsys, monkeypatch):
    from lavis.datasets.download.__main__ import main

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the first download waits on it, holding its folder's lock
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    env = {"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}
    root = tmp_path / "quilt_vqa"
    first = spawn(["-m", "lavis.datasets.download", "quilt_vqa", "--root", str(root), "--token", SECRET,
                   "--timeout", "120"], env=env)
    try:
        wait_for(root / ".lock", first)
        record = json.loads((root / ".lock").read_text())
        assert record["argv"][-4:] == ["--token", "***", "--timeout", "120"]
        # another user's download into the same folder is refused, and shown who holds it, not the token
        monkeypatch.setattr(sys, "argv", ["download", "quilt_vqa", "--root", str(root), f"--token={SECRET}-2"])
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert main(["quilt_vqa", "--root", str(root), "--token", f"{SECRET}-2"]) == 2
        refused = capsys.readouterr().err
        assert f"{root} is in use by another lavis.datasets.download quilt_vqa (pid {first.pid}" in refused
        assert "--token ***" in refused and SECRET not in refused
        first.send_signal(signal.SIGKILL)  # the lock outlives its writer: still no token in it
        first.wait(30)
        assert SECRET not in (root / ".lock").read_text()
        assert SECRET not in "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())
    finally:
        silent.close()
