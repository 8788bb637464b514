"""The shared answering core: batched answers equal one-at-a-time answers for both LLM kinds
(encoder-decoder and decoder-only, prompts of different lengths), decoding settings group as
documented, and closed questions are told apart from choice questions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lavis.models.llm.verdict import verdict


@pytest.mark.parametrize("kind", ["t5", "llama"])
def test_a_batch_answers_as_one_at_a_time(kind, answerer, llama_answerer, questions):
    from lavis.apps.inference import Decoding
    from lavis.common.conversation import Turn

    model = answerer if kind == "t5" else llama_answerer
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)) for _ in range(6)]
    decoding = Decoding(max_new_tokens=5, min_new_tokens=1, num_beams=3, n=2)
    queries = [model.query(images[i], questions[i % 5], [Turn(questions[4], "yes")] * (i % 3), decoding)
               for i in range(6)]
    assert len({q.instruction for q in queries}) > 3  # prompts of different lengths share the batch
    batched = model.answer(queries)
    for query, answer in zip(queries, batched):
        alone = model.answer([query])[0]
        assert [c.text for c in answer.choices] == [c.text for c in alone.choices]
        assert [c.finish_reason for c in answer.choices] == [c.finish_reason for c in alone.choices]
        for mine, theirs in zip(answer.choices, alone.choices):
            # a yes/no confidence exactly for the closed questions' answers that state a verdict
            assert (mine.yes_no is None) == (theirs.yes_no is None) == (not query.closed or verdict(mine.text) is None)
            if mine.yes_no:
                assert mine.yes_no["yes"] == pytest.approx(theirs.yes_no["yes"], abs=1e-5)
        assert all(c.completion_tokens <= 5 for c in answer.choices)


def test_decoding_groups_and_defaults():
    from lavis.apps.inference import Decoding
    from lavis.common.errors import ConfigError

    beams = Decoding(max_new_tokens=8)
    assert beams.group_key() == Decoding(max_new_tokens=8, seed=3).group_key()  # a seed means nothing here
    assert beams.group_key() != Decoding(max_new_tokens=9).group_key()
    assert Decoding(temperature=0.7).group_key() == Decoding(temperature=0.7).group_key()
    assert Decoding(temperature=0.7, seed=1).group_key() is None  # seeded sampling runs alone
    options = Decoding(n=3, num_beams=2).options()
    assert options.num_beams == 3 and options.num_return_sequences == 3 and not options.use_nucleus_sampling
    sampled = Decoding(temperature=0.5, top_p=0.8).options()
    assert sampled.use_nucleus_sampling and sampled.num_beams == 1 and sampled.temperature == 0.5
    from_run = Decoding.from_generation({"num_beams": 3, "max_new_tokens": 20}, min_new_tokens=1)
    assert (from_run.num_beams, from_run.max_new_tokens, from_run.min_new_tokens) == (3, 20, 1)
    with pytest.raises(ConfigError, match="'generation.num_beam'.*Did you mean 'num_beams'"):
        Decoding.from_generation({"num_beam": 3})


def test_closed_questions_are_yes_no_questions_not_choices():
    from lavis.apps.inference.answerer import closed_question

    assert closed_question("Is there necrosis?") and closed_question("The stain is H&E. Does it show mitoses?")
    assert closed_question("Is there necrosis or not?")
    assert not closed_question("Is the tissue dense or loose?") and not closed_question("Which stain is used?")
