"""The server speaks the chat-completions wire format: the official ``openai`` client works
unchanged, streaming and not, on loopback."""

from __future__ import annotations

import json
import urllib.request

import pytest


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    url, _ = server
    return OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_answers_match_the_model_and_closed_questions_carry_yes_no(client, answerer, decoding, tiles, user):
    from PIL import Image

    question = "is there necrosis in this image"
    reply = client.chat.completions.create(model="tiny-clover", messages=[user(question, tiles[0])])
    choice = reply.choices[0]
    expected = answerer.answer([answerer.query(Image.open(tiles[0]).convert("RGB"), question, decoding=decoding)])[0]
    assert reply.object == "chat.completion" and reply.model == "tiny-clover" and reply.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.message.content == expected.choices[0].text
    assert choice.message.content.strip(), "the tiny trained model answers with words"
    assert choice.finish_reason in ("stop", "length")
    yes_no = choice.model_extra["yes_no"]
    assert yes_no == pytest.approx(expected.choices[0].yes_no, abs=1e-5)
    assert yes_no["yes"] + yes_no["no"] == pytest.approx(1.0) and 0 < yes_no["yes"] < 1
    assert reply.usage.prompt_tokens == expected.prompt_tokens > 8  # 8 query tokens + the question
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    open_reply = client.chat.completions.create(model="tiny-clover", messages=[user("what type of cells are seen", tiles[0])])
    assert "yes_no" not in (open_reply.choices[0].model_extra or {})


def test_streaming_gives_the_same_answer_in_standard_chunks(client, tiles, user):
    messages = [user("is the tissue dense", tiles[1])]
    whole = client.chat.completions.create(model="tiny-clover", messages=messages)
    chunks = list(client.chat.completions.create(model="tiny-clover", messages=messages, stream=True,
                                                 stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    closing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(closing) == 1 and closing[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert closing[0].choices[0].model_extra["yes_no"] == whole.choices[0].model_extra["yes_no"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_raw_stream_ends_with_done(server, tiles, user):
    url, _ = server
    body = {"model": "tiny-clover", "messages": [user("which stain is used", tiles[2])], "stream": True}
    request = urllib.request.Request(f"{url}/v1/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in response.read().decode().split("\n\n") if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert [json.loads(e[6:])["object"] for e in events[:-1]] == ["chat.completion.chunk"] * (len(events) - 1)


def test_n_answers_sampling_seed_and_models(client, tiles, user):
    messages = [user("describe the image in detail", tiles[3])]
    beams = client.chat.completions.create(model="tiny-clover", messages=messages, n=2)
    assert [c.index for c in beams.choices] == [0, 1]
    sampled = [client.chat.completions.create(model="tiny-clover", messages=messages, n=2, temperature=1.5,
                                              top_p=0.95, seed=7, max_tokens=4) for _ in range(2)]
    assert [c.message.content for c in sampled[0].choices] == [c.message.content for c in sampled[1].choices]
    assert all(c.usage.completion_tokens <= 2 * 4 for c in sampled)
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny-clover"]
    assert client.models.retrieve("tiny-clover").id == "tiny-clover"


def test_health_reports_the_batches(server):
    url, _ = server
    with urllib.request.urlopen(f"{url}/health", timeout=30) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["model"] == "tiny-clover"
    assert health["requests"] >= 1 and sum(health["batch_sizes"].values()) == health["batches"]
    assert 0 < health["generation_idle_s"] <= health["uptime_s"] + 1  # it waited between the tests' requests
