"""Batching in the server. Continuous (the default): concurrent requests share decoding steps and
get exactly the answers they get one at a time, and a short question joins a running batch and
leaves it long before the long answer beside it is done. Wave (``--batching wave``, the baseline):
one generate call per batch of equal settings, and a lone client does not wait for company."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=30) as response:
        return json.loads(response.read())


def test_sixteen_concurrent_requests_share_steps_and_answer_as_sequential_ones(make_server, tiles, user, questions):
    from openai import OpenAI

    requests = [[user(questions[i % len(questions)], tiles[i % len(tiles)])] for i in range(16)]
    with make_server(max_batch=16) as (url, service):
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)

        def ask(messages):
            reply = client.chat.completions.create(model="tiny-clover", messages=messages)
            return reply.choices[0].message.content, (reply.choices[0].model_extra or {}).get("yes_no")

        sequential = [ask(m) for m in requests]
        after_sequential = Counter(service.batcher.stats.batches)
        assert set(after_sequential) == {1}  # one at a time: every step decodes one request
        with ThreadPoolExecutor(16) as pool:
            concurrent = list(pool.map(ask, requests))
        sizes = service.batcher.stats.batches - after_sequential
        stats = health(url)
    assert [text for text, _ in concurrent] == [text for text, _ in sequential]
    for (_, batched), (_, alone) in zip(concurrent, sequential):
        assert (batched is None) == (alone is None)
        if batched:
            assert abs(batched["yes"] - alone["yes"]) < 1e-4
    assert max(sizes) >= 8, f"16 concurrent requests should share steps, got step sizes {dict(sizes)}"
    assert stats["batching"] == "continuous" and stats["requests"] == 32 and stats["failed"] == 0


def test_a_short_question_joins_a_running_batch_and_leaves_before_the_long_answer(make_server, tiles, user, questions):
    """A 40-token answer is streaming; a 2-token question sent then is answered while it still streams."""
    from openai import OpenAI

    from lavis.apps.inference import Decoding

    long_answers = Decoding(max_new_tokens=40, min_new_tokens=40, num_beams=1)
    with make_server(defaults=long_answers) as (url, service):
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        started, times = threading.Event(), {}

        def long_request():
            stream = client.chat.completions.create(model="tiny-clover", messages=[user(questions[3], tiles[0])],
                                                    max_tokens=40, stream=True)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    started.set()
            times["long"] = time.monotonic()

        thread = threading.Thread(target=long_request)
        thread.start()
        assert started.wait(60)
        reply = client.chat.completions.create(model="tiny-clover", messages=[user(questions[1], tiles[1])],
                                               max_tokens=2)
        times["short"] = time.monotonic()
        thread.join(120)
    assert reply.usage.completion_tokens <= 2 and times["short"] < times["long"]
    assert max(service.batcher.stats.batches) == 2  # the short one shared the long one's steps


def test_wave_batching_never_mixes_settings_in_a_batch(make_server, tiles, user, questions):
    from openai import OpenAI

    with make_server(batching="wave", max_batch=16, max_wait_ms=400) as (url, service):
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        seen = []
        original = service.batcher._answer

        def spy(queries):
            seen.append({q.decoding.group_key() for q in queries})
            return original(queries)

        service.batcher._answer = spy
        jobs = [(questions[i % 5], tiles[i % len(tiles)], 3 + i % 2) for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda job: client.chat.completions.create(
                model="tiny-clover", messages=[user(job[0], job[1])], max_tokens=job[2]), jobs))
        stats = health(url)
    assert all(len(keys) == 1 for keys in seen), "one batch, one set of decoding settings"
    assert len(seen) >= 2 and sum(1 for _ in replies) == 8 and stats["batching"] == "wave"
    for reply, job in zip(replies, jobs):
        assert reply.usage.completion_tokens <= job[2]


def test_wave_batching_a_lone_client_does_not_wait_for_company(make_server, tiles, user, questions):
    """A request that arrives long after the previous one is answered without the batching wait."""
    from openai import OpenAI

    with make_server(batching="wave", max_wait_ms=5000) as (url, service):
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        client.chat.completions.create(model="tiny-clover", messages=[user(questions[0], tiles[0])], max_tokens=3)
        time.sleep(5.5)  # longer than max_wait after the previous request: nothing suggests company
        start = time.monotonic()
        client.chat.completions.create(model="tiny-clover", messages=[user(questions[1], tiles[1])], max_tokens=3)
        assert time.monotonic() - start < 4.0  # far below the 5 s wait
