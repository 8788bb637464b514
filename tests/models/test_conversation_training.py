"""Training on conversations: a model tuned on them reads each turn with its earlier turns folded
in the format it records; a single-turn model trains every turn as a plain question. Both LLM
kinds, through the builder's rows and the real collate."""

from __future__ import annotations

import pytest
import torch

from lavis.datasets.collate import collate

MULTI = {"conversation": {"mode": "multi_turn", "history_format": "qa_v1", "max_turns": 3}}
HISTORY = [{"question": "is there necrosis in this image", "answer": "yes"},
           {"question": "what type of cells are seen", "answer": "lymphocytes"}]


def items(make_batch) -> list[dict]:
    batch = make_batch(2)
    return [{"image": batch["image"][i], "text_input": batch["text_input"][i], "text_output": batch["text_output"][i],
             "history": history} for i, history in enumerate([HISTORY, None])]


@pytest.mark.parametrize("arch", ["blip2_t5_instruct", "blip2_vicuna_instruct"])
def test_a_multi_turn_model_trains_each_turn_with_its_history(build_tiny, make_batch, arch):
    samples = collate(items(make_batch))
    multi, single = build_tiny(arch, **MULTI), build_tiny(arch)
    folded = "Q: is there necrosis in this image A: yes Q: what type of cells are seen A: lymphocytes Q: "
    question = samples["text_input"][0]
    assert multi.prompts(samples)[0] == multi.cfg.prompt.format(folded + question)
    assert multi.prompts(samples)[1] == single.prompts(samples)[1] == multi.cfg.prompt.format(samples["text_input"][1])
    assert single.prompts(samples)[0] == single.cfg.prompt.format(question)  # single-turn: the question alone
    assert multi.qformer_prompts(samples) == single.qformer_prompts(samples)  # the queries read the question
    without = {**samples, "history": [None, None]}
    multi.train(), single.train()
    torch.manual_seed(0)
    with_history_loss = multi(samples)["loss"]
    torch.manual_seed(0)
    assert not torch.allclose(with_history_loss, multi(without)["loss"])  # the history reaches the LLM
    torch.manual_seed(0)
    single_loss = single(samples)["loss"]
    torch.manual_seed(0)
    assert torch.equal(single_loss, single(without)["loss"])  # and never a single-turn model's
    with_history_loss.backward()
    assert multi.query_tokens.grad is not None


def test_the_builder_rows_carry_each_turns_earlier_turns(tmp_path):
    import json

    from lavis.datasets.builders.llava_med import read_conversations

    record = {"id": 7, "image": "a.png", "conversations": [
        {"from": "human", "value": "What tissue is this?\n<image>"}, {"from": "gpt", "value": "Colon."},
        {"from": "human", "value": "Are the crypts regular?"}, {"from": "gpt", "value": "No, crowded."},
        {"from": "human", "value": "Where?"}, {"from": "gpt", "value": "On the right."}]}
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([record]))
    rows = read_conversations(path)
    assert [row["question_id"] for row in rows] == [7, "7_1", "7_2"]
    assert rows[0]["history"] is None
    assert rows[2]["history"] == [{"question": "What tissue is this?", "answer": "Colon."},
                                  {"question": "Are the crypts regular?", "answer": "No, crowded."}]
