"""Generation against a real chat-completions server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lavis.instructions.cli import main
from lavis.instructions.outputs import INSTRUCTIONS_FILE, LLAVA_FILE, PLOT_FILE, SUMMARY_FILE

FAST = ["--timeout", "0.3", "--backoff-base", "0.01", "--backoff-max", "0.05", "--no-progress"]


def run_cli(server, captions: Path, out: Path, *extra: str) -> int:
    args = ["--captions", str(captions), "--out", str(out), "--base-url", server.url, "--api-key-env", "CLOVER_TEST_KEY"]
    return main(args + FAST + list(extra))


def raw_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "raw.jsonl").read_text().splitlines()]


FAULT_CAPTIONS = [
    "Glands #0 in a row.",
    "Glands #1 [faults: 429, 500] crowded.",
    "Glands #2 [faults: timeout] crowded.",
    "Glands #3 [faults: broken_json] crowded.",
    "Glands #4 [faults: truncated] crowded.",
    "Glands #5 [faults: lines] crowded.",
    "Glands #6 [faults: fence] crowded.",
    "Glands #7 [faults: bad_body] crowded.",
    "Glands #8 [faults: garbage, garbage, garbage] never parses.",
]


def test_faults_are_retried_and_outputs_are_complete(chat_server, api_key, quilt_csv, tmp_path, capsys):
    out = tmp_path / "run"
    status = run_cli(chat_server, quilt_csv(FAULT_CAPTIONS), out, "--mode", "generate", "--workers", "3", "-v")
    captured = capsys.readouterr()
    assert status == 0, captured.err
    records = {r["caption_id"]: r for r in raw_lines(out)}
    assert sorted(records) == [str(i) for i in range(9)]  # one record per caption, no duplicates

    requests = {i: [r for r in chat_server.requests if f"#{i} " in r["caption"]] for i in range(9)}
    assert [r["behaviour"] for r in requests[1]] == ["429", "500", "ok"]
    gap = requests[1][1]["time"] - requests[1][0]["time"]
    assert gap >= 0.3  # Retry-After: 0.3 honoured although the backoff cap is 0.05 s
    assert [r["behaviour"] for r in requests[2]] == ["timeout", "ok"]
    assert [r["behaviour"] for r in requests[4]] == ["truncated", "ok"]
    assert requests[4][1]["max_tokens"] > requests[4][0]["max_tokens"]  # retried with more room
    assert [r["behaviour"] for r in requests[7]] == ["bad_body", "ok"]
    assert all(r["auth"] == f"Bearer {api_key}" for r in chat_server.requests)

    for i in range(8):  # every caption but the never-parsing one ends with 3 accepted pairs
        record = records[str(i)]
        assert record["status"] == "ok" and len(record["pairs"]) == 3, record
        assert sorted(r["reason"] for r in record["rejected"]) == ["duplicate_question", "magnification", "mentions_source"]
    assert records["3"]["parse_errors"][0].startswith("unparseable") and records["3"]["usage"]["replies"] == 2
    assert records["6"]["parse_errors"] == [] and records["6"]["usage"]["replies"] == 1  # fenced JSON parsed
    assert records["4"]["parse_errors"][0].startswith("truncated")
    line_format = {"question": "What tissue is shown in image 5?", "answer": "Tissue sample 5 with glands."}
    assert records["5"]["pairs"][0] == line_format
    failed = records["8"]
    assert failed["status"] == "failed" and failed["pairs"] == [] and failed["usage"]["replies"] == 3
    assert failed["error"].startswith("unparseable: no usable reply in 3")
    assert "rejected pair (mentions_source)" in (out / "generation.log").read_text()

    # cost totals equal what the server reported (every delivered 200 reply, retries included)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    served_in = sum(p for p, _ in chat_server.usage)
    served_out = sum(c for _, c in chat_server.usage)
    assert summary["usage"]["prompt_tokens"] == served_in and summary["usage"]["completion_tokens"] == served_out
    assert summary["usage"]["replies"] == len(chat_server.usage)
    assert summary["cost_usd"] == pytest.approx((served_in * 0.5 + served_out * 1.5) / 1e6, rel=1e-6)
    assert summary["counts"]["by_source"] == {"generated": 24}
    assert summary["rejections_by_reason"] == {"mentions_source": 8, "duplicate_question": 8, "magnification": 8}
    assert summary["failures_by_reason"] == {"unparseable": 1}

    instructions = [json.loads(line) for line in (out / INSTRUCTIONS_FILE).read_text().splitlines()]
    assert len(instructions) == 24 and [i["caption_id"] for i in instructions[::3]] == [str(i) for i in range(8)]
    assert set(instructions[0]) >= {"question", "answer", "image", "caption", "caption_id", "source"}
    assert instructions[0]["source"] == "generated" and instructions[0]["image"] == "img_0000.jpg"
    llava = json.loads((out / LLAVA_FILE).read_text())
    assert llava[0]["conversations"] == [
        {"from": "human", "value": f"{instructions[0]['question']}\n<image>"},
        {"from": "gpt", "value": instructions[0]["answer"]},
    ]
    assert (out / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the key never leaves the process environment
    for path in out.iterdir():
        assert api_key not in path.read_text(errors="replace"), path
    assert api_key not in captured.out and api_key not in captured.err


def test_rerun_skips_finished_captions(chat_server, api_key, quilt_csv, tmp_path):
    captions = quilt_csv([f"Glands #{i} here." for i in range(5)])
    out = tmp_path / "run"
    assert run_cli(chat_server, captions, out, "--mode", "generate", "--limit", "3") == 0
    assert len(chat_server.requests) == 3
    assert run_cli(chat_server, captions, out, "--mode", "both", "--model", "gpt-4o-mini") == 0
    assert len(chat_server.requests) == 5  # only the two new captions were requested
    assert "holds 3 records from model gpt-3.5-turbo / prompt clover_qa_v1" in (out / "generation.log").read_text()
    assert {r["model"] for r in raw_lines(out)} == {"gpt-3.5-turbo", "gpt-4o-mini"}
    ids = [r["caption_id"] for r in raw_lines(out)]
    assert sorted(ids[:3]) == ["0", "1", "2"] and sorted(ids) == ["0", "1", "2", "3", "4"]
    summary = json.loads((tmp_path / "run" / SUMMARY_FILE).read_text())
    assert summary["counts"]["by_source"]["generated"] == 15 and summary["counts"]["by_source"]["template"] > 5


def test_dry_run_sends_nothing_and_writes_nothing(chat_server, api_key, quilt_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(chat_server, quilt_csv([f"Glands #{i}." for i in range(10)]), out, "--dry-run") == 0
    report = json.loads(capsys.readouterr().out)
    assert chat_server.requests == [] and not out.exists()
    assert report["requests"] == 10 and report["estimated_prompt_tokens"] > 10 * 300
    assert report["estimated_cost_usd"] == pytest.approx(
        (report["estimated_prompt_tokens"] * 0.5 + report["estimated_completion_tokens"] * 1.5) / 1e6, abs=1e-4
    )
    assert report["template_instructions"] >= 10


def test_max_cost_stops_cleanly_and_holds_across_runs(chat_server, api_key, quilt_csv, tmp_path, capsys):
    captions = quilt_csv([f"Glands #{i} here." for i in range(20)])
    out = tmp_path / "run"
    # $1000 per 1M tokens: one caption costs about $0.75, so $3 buys three or four of them
    prices = ["--price-in", "1000", "--price-out", "1000", "--max-cost", "3", "--workers", "2", "--mode", "generate"]
    assert run_cli(chat_server, captions, out, *prices) == 0
    summary = json.loads((out / SUMMARY_FILE).read_text())
    written = len(raw_lines(out))
    assert 2 <= written < 20 and summary["run"]["stopped"] == "max_cost"
    assert summary["run"]["pending_after_run"] == 20 - written
    assert summary["cost_usd"] == pytest.approx(sum(p + c for p, c in chat_server.usage) * 1000 / 1e6)
    # the budget covers everything this folder spent: reruns add at most what still fits
    assert run_cli(chat_server, captions, out, *prices) == 0
    requests = len(chat_server.requests)
    assert run_cli(chat_server, captions, out, *prices) == 0
    assert len(chat_server.requests) == requests  # nothing fits any more: no request at all
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["cost_usd"] <= 3.0 and summary["run"]["written"] == 0
    assert summary["cost_usd"] == pytest.approx(sum(p + c for p, c in chat_server.usage) * 1000 / 1e6)
    assert "stopped: max_cost" in capsys.readouterr().out


def test_exhausted_retries_leave_the_caption_pending(chat_server, api_key, quilt_csv, tmp_path):
    captions = quilt_csv(["Glands #0 fine.", "Glands #1 [faults: 500, 500, 500] flaky."])
    out = tmp_path / "run"
    assert run_cli(chat_server, captions, out, "--mode", "generate", "--max-retries", "2") == 1
    assert [r["caption_id"] for r in raw_lines(out)] == ["0"]  # no record: nothing was paid for
    assert run_cli(chat_server, captions, out, "--mode", "generate", "--max-retries", "2") == 0
    assert sorted(r["caption_id"] for r in raw_lines(out)) == ["0", "1"]


def test_an_endpoint_that_keeps_failing_stops_the_run(chat_server, api_key, quilt_csv, tmp_path, capsys):
    chat_server.default = "500"
    out = tmp_path / "run"
    captions = quilt_csv([f"Glands #{i}." for i in range(40)])
    assert run_cli(chat_server, captions, out, "--mode", "generate", "--workers", "2", "--max-retries", "1") == 1
    tried = {r["caption"] for r in chat_server.requests}
    assert 5 <= len(tried) <= 7 and raw_lines(out) == []  # gave up after 5 captions in a row (+ in flight)
    assert "fatal: 5 captions in a row failed, last: http_500" in capsys.readouterr().out


def test_bad_key_stops_the_run(chat_server, api_key, quilt_csv, tmp_path, capsys):
    chat_server.default = "401"
    out = tmp_path / "run"
    assert run_cli(chat_server, quilt_csv([f"Glands #{i}." for i in range(30)]), out, "--mode", "generate", "--workers", "2") == 1
    assert len(chat_server.requests) <= 3 and raw_lines(out) == []
    assert "fatal: http_401" in capsys.readouterr().out


def test_missing_key_for_the_openai_endpoint(monkeypatch, quilt_csv, tmp_path, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    status = main(["--captions", str(quilt_csv(["a"])), "--out", str(tmp_path / "o"), "--mode", "generate"])
    assert status == 2 and "OPENAI_API_KEY" in capsys.readouterr().err
