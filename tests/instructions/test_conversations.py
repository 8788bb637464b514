"""Multi-turn instructions: template conversations, generated conversations, and the LLaVA export,
read back by the training builder with every turn's history."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from lavis.instructions.cli import main
from lavis.instructions.conversations import chain_into_conversations
from lavis.instructions.outputs import INSTRUCTIONS_FILE, LLAVA_FILE, SUMMARY_FILE

REPO = Path(__file__).resolve().parents[2]
CONVERSATION_PROMPT = REPO / "configs" / "instructions" / "prompts" / "clover_conversation_v1.yaml"


def items(images: int, per_image: int) -> list[dict]:
    return [{"id": f"{i}:t{k}", "caption_id": str(i), "question": f"q{i}.{k}", "answer": f"a{i}.{k}",
             "image": f"{i}.png", "answer_type": "OPEN", "source": "template"}
            for i in range(images) for k in range(per_image)]


def test_template_questions_chain_into_conversations_of_two_to_four_turns():
    chained = chain_into_conversations(items(30, 7), seed=3)
    assert sorted(i["id"] for i in chained) == sorted(i["id"] for i in items(30, 7))  # every instruction once
    sizes = Counter(i["conversation_id"] for i in chained)
    assert set(sizes.values()) <= {1, 2, 3, 4} and {2, 3, 4} <= set(sizes.values())
    for item in chained:  # each turn carries exactly the earlier turns of its conversation, in order
        earlier = sorted((i for i in chained if i["conversation_id"] == item["conversation_id"]
                          and i["turn"] < item["turn"]), key=lambda i: i["turn"])
        assert item["history"] == [{"question": i["question"], "answer": i["answer"]} for i in earlier]
        assert item["conversation_id"].startswith(item["caption_id"] + ":")
    assert chain_into_conversations(items(30, 7), seed=3) == chained  # deterministic
    assert chain_into_conversations(items(30, 7), seed=4) != chained


def test_template_conversations_reach_training_with_their_history(chat_server, api_key, quilt_csv, tmp_path):
    from lavis.datasets.builders.clover_instructions import read_instructions

    captions = quilt_csv([f"Glands #{i} in a row, crowded." for i in range(4)])
    out = tmp_path / "run"
    assert main(["--captions", str(captions), "--out", str(out), "--mode", "template", "--conversations",
                 "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / INSTRUCTIONS_FILE).read_text().splitlines()]
    assert any(r["history"] for r in records) and all("conversation_id" in r for r in records)
    rows = read_instructions(out / INSTRUCTIONS_FILE, [])
    assert [[(h["question"], h["answer"]) for h in (row["history"] or [])] for row in rows] == \
        [[(h["question"], h["answer"]) for h in r["history"]] for r in records]
    # the LLaVA export holds each conversation once, and reads back as the same turns and histories
    llava = json.loads((out / LLAVA_FILE).read_text())
    assert len(llava) == len({r["conversation_id"] for r in records})
    from_llava = read_instructions(out / LLAVA_FILE, [])
    key = lambda row: (row["text_input"], row["text_output"], json.dumps(row["history"]))  # noqa: E731
    assert sorted(map(key, from_llava)) == sorted(map(key, rows))
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["settings"]["conversations"] == {"template": True, "generated": False}


def test_a_generated_conversation_keeps_its_order_and_the_turns_the_filter_accepted(chat_server, api_key,
                                                                                   quilt_csv, tmp_path):
    captions = quilt_csv([f"Glands #{i} here." for i in range(3)])
    out = tmp_path / "run"
    args = ["--captions", str(captions), "--out", str(out), "--base-url", chat_server.url,
            "--api-key-env", "CLOVER_TEST_KEY", "--mode", "generate", "--prompt", str(CONVERSATION_PROMPT),
            "--no-progress", "--limit", "2"]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / INSTRUCTIONS_FILE).read_text().splitlines()]
    raw = [json.loads(line) for line in (out / "raw.jsonl").read_text().splitlines()]
    assert {r["prompt_version"] for r in raw} == {"clover_conversation_v1"}
    for record in raw:  # the accepted pairs, in the reply's order, each after the ones before it
        turns = [r for r in records if r["caption_id"] == str(record["caption_id"])]
        accepted = [(p["question"], p["answer"]) for p in record["pairs"]]
        assert [(t["question"], t["answer"]) for t in sorted(turns, key=lambda t: t["turn"])] == accepted
        for turn in turns:
            assert [(h["question"], h["answer"]) for h in turn["history"]] == accepted[: turn["turn"]]
    assert main(args[:-2]) == 0  # resumable: only the third caption is requested now
    assert len(chat_server.requests) == 3
