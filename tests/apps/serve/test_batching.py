"""Dynamic batching: concurrent requests share generate calls and get exactly the answers they
get one at a time; requests with different settings are never mixed in one call."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=30) as response:
        return json.loads(response.read())


def test_sixteen_concurrent_requests_are_batched_and_answer_as_sequential_ones(make_server, tiles, user, questions):
    from openai import OpenAI

    requests = [[user(questions[i % len(questions)], tiles[i % len(tiles)])] for i in range(16)]
    with make_server(max_batch=16, max_wait_ms=300) as (url, service):
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)

        def ask(messages):
            reply = client.chat.completions.create(model="tiny-clover", messages=messages)
            return reply.choices[0].message.content, (reply.choices[0].model_extra or {}).get("yes_no")

        sequential = [ask(m) for m in requests]
        after_sequential = dict(service.batcher.stats.batches)
        assert after_sequential == {1: 16}  # one at a time: batches of one
        with ThreadPoolExecutor(16) as pool:
            concurrent = list(pool.map(ask, requests))
        sizes = service.batcher.stats.batches - Counter(after_sequential)
        stats = health(url)
    assert [text for text, _ in concurrent] == [text for text, _ in sequential]
    for (_, batched), (_, alone) in zip(concurrent, sequential):
        assert (batched is None) == (alone is None)
        if batched:
            assert abs(batched["yes"] - alone["yes"]) < 1e-4
    assert sum(size * count for size, count in sizes.items()) == 16
    assert max(sizes) >= 8, f"16 concurrent requests should share batches, got sizes {dict(sizes)}"
    assert stats["requests"] == 32 and stats["failed"] == 0


def test_different_settings_are_never_batched_together(make_server, tiles, user, questions):
    from openai import OpenAI

    with make_server(max_batch=16, max_wait_ms=400) as (url, service):
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
    assert all(len(keys) == 1 for keys in seen), "one batch, one set of decoding settings"
    assert len(seen) >= 2 and sum(1 for _ in replies) == 8
    for reply, job in zip(replies, jobs):
        assert reply.usage.completion_tokens <= job[2]


def test_a_lone_client_does_not_wait_for_company(make_server, tiles, user, questions):
    """A request that arrives long after the previous one is answered without the batching wait."""
    import time

    from openai import OpenAI

    with make_server(max_wait_ms=5000) as (url, service):
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        client.chat.completions.create(model="tiny-clover", messages=[user(questions[0], tiles[0])], max_tokens=3)
        time.sleep(5.5)  # longer than max_wait after the previous request: nothing suggests company
        start = time.monotonic()
        client.chat.completions.create(model="tiny-clover", messages=[user(questions[1], tiles[1])], max_tokens=3)
        assert time.monotonic() - start < 4.0  # far below the 5 s wait
