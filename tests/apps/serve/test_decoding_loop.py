"""Continuous batching (lavis/apps/inference/decoding_loop.py): requests that join a running batch
at different steps, with different decodings, get token for token the answers ``generate`` gives
each of them alone - for both LLM kinds - and their streamed text adds up to the answer."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lavis.apps.inference.decoding_loop import DecodingLoop


def decodings():
    from lavis.apps.inference import Decoding

    return [
        Decoding(max_new_tokens=8, min_new_tokens=8, num_beams=1),  # greedy, exactly 8 tokens
        Decoding(max_new_tokens=3, min_new_tokens=1, num_beams=1),  # greedy, leaves early
        Decoding(max_new_tokens=7, min_new_tokens=3, num_beams=1, repetition_penalty=1.4),
        Decoding(max_new_tokens=6, min_new_tokens=1, num_beams=3),  # beam search, T5: length penalty -1
        Decoding(max_new_tokens=6, min_new_tokens=2, num_beams=3, n=2, length_penalty=1.0),
        Decoding(max_new_tokens=6, min_new_tokens=1, temperature=0.8, top_p=0.9, n=2, seed=7),  # seeded sampling
        Decoding(max_new_tokens=5, min_new_tokens=1, temperature=1.3, seed=11),
    ]


def run_loop(answerer, queries, join_at):
    """Submit query i before step ``join_at[i]``; step until all are answered. Returns, per query,
    its answer, its streamed text per choice, the step it finished at, and the most requests it
    was decoded with."""
    loop = DecodingLoop(answerer, max_requests=16)
    answers, streamed, finished_at = {}, {}, {}
    clock = [0]  # the step being run
    while len(answers) < len(queries):
        for i, query in enumerate(queries):
            if join_at[i] == clock[0]:
                streamed[i] = [""] * query.decoding.n

                def notify(event, i=i):
                    assert event.kind != "error", event.error
                    if event.kind == "text":
                        streamed[i] = [old + new for old, new in zip(streamed[i], event.text)]
                    else:
                        answers[i], finished_at[i] = event, clock[0]

                loop.submit(query, notify)
        loop.step()
        clock[0] += 1
        assert clock[0] < 200
    assert loop.idle
    return [(answers[i].answer, streamed[i], finished_at[i], answers[i].batch) for i in range(len(queries))]


@pytest.mark.parametrize("kind", ["t5", "llama"])
def test_requests_joining_at_any_step_answer_as_generate_does_alone(kind, answerer, llama_answerer, questions):
    model = answerer if kind == "t5" else llama_answerer
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)) for _ in range(7)]
    queries = [model.query(images[i], questions[i % len(questions)] + " please" * (i % 3), decoding=d)
               for i, d in enumerate(decodings())]
    join_at = [0, 0, 1, 2, 2, 3, 5]
    results = run_loop(model, queries, join_at)
    for query, (answer, streamed, _, _) in zip(queries, results):
        alone = model.answer([query])[0]  # transformers' generate, this request alone
        assert [c.text for c in answer.choices] == [c.text for c in alone.choices], query.decoding
        assert [c.finish_reason for c in answer.choices] == [c.finish_reason for c in alone.choices]
        assert [c.completion_tokens for c in answer.choices] == [c.completion_tokens for c in alone.choices]
        assert answer.prompt_tokens == alone.prompt_tokens
        for mine, theirs in zip(answer.choices, alone.choices):
            assert (mine.yes_no is None) == (theirs.yes_no is None)
            if mine.yes_no:
                assert mine.yes_no["yes"] == pytest.approx(theirs.yes_no["yes"], abs=1e-5)
        assert streamed == [c.text for c in answer.choices]  # the streamed pieces add up to the answer
    # the 3-token request joined with others and left before the 8-token one that joined with it
    assert results[1][3] >= 2 and results[1][2] < results[0][2]


def test_a_request_that_joins_later_does_not_change_the_running_ones(answerer, questions):
    """The same request decoded next to different company, joining at different steps, gives the same tokens."""
    from lavis.apps.inference import Decoding

    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)) for _ in range(6)]
    decoding = Decoding(max_new_tokens=6, min_new_tokens=6, num_beams=1)  # every answer exactly 6 tokens long
    queries = [answerer.query(images[i], questions[i % 5], decoding=decoding) for i in range(6)]
    together = run_loop(answerer, queries, [0] * 6)
    staggered = run_loop(answerer, queries, [0, 1, 2, 3, 4, 5])
    assert [r[0].choices[0].text for r in together] == [r[0].choices[0].text for r in staggered]
    assert max(r[3] for r in staggered) >= 4  # several requests at different lengths shared steps


def test_with_a_stream_interval_text_comes_in_fewer_pieces_that_still_add_up(answerer, questions):
    """The first piece at once, then at most one per interval (here: none before the end)."""
    from lavis.apps.inference import Decoding

    image = Image.fromarray(np.random.default_rng(4).integers(0, 255, (60, 60, 3), dtype=np.uint8))
    query = answerer.query(image, questions[3], decoding=Decoding(max_new_tokens=8, min_new_tokens=8, num_beams=1))
    pieces = {}
    for interval in (0.0, 3600.0):
        events = []
        loop = DecodingLoop(answerer, stream_interval=interval)
        loop.submit(query, events.append)
        while not loop.idle:
            loop.step()
        texts = [e.text[0] for e in events if e.kind == "text"]
        assert "".join(texts) == events[-1].answer.choices[0].text  # nothing lost, nothing repeated
        pieces[interval] = len(texts)
    assert pieces[3600.0] == 2 and pieces[0.0] > 2, pieces  # the first piece, then the rest with the answer


def test_an_idle_loop_waits_for_company_only_when_it_is_on_its_way():
    from lavis.apps.serve.continuous import hold_for_company

    assert hold_for_company(now=0.001, arrivals=[0.0], first=0.0, max_wait=0.02) == 0.0  # alone: no wait
    assert hold_for_company(0.006, [0.0, 0.005], 0.0, 0.02) == pytest.approx(0.004)  # a second came 5 ms later:
    assert hold_for_company(0.011, [0.005, 0.01], 0.0, 0.02) == pytest.approx(0.004)  # until 5 ms after the newest,
    assert hold_for_company(0.019, [0.017, 0.018], 0.0, 0.02) == pytest.approx(0.001)  # or 20 ms after the first
    assert hold_for_company(0.051, [-1.0, 0.05], 0.05, 0.02) == 0.0  # the newest came long after the one before
    assert hold_for_company(0.03, [0.0, 0.005], 0.0, 0.02) == 0.0  # the first has waited max_wait already
