"""The demo LM's pretraining loop: batches of similar length, and the core it takes back at a fixed step."""

import random

import torch

from lavis.apps.demo.jobs import Job
from lavis.apps.demo.pipeline import Pipeline, load_settings
from lavis.apps.demo.pretrain_lm import length_grouped_batches


def test_length_grouped_batches_pad_less_and_still_cover_the_data():
    rng = random.Random(0)
    prompts = [[1] * rng.randint(8, 130) for _ in range(2000)]
    batches = length_grouped_batches(prompts, 64, random.Random(1))
    drawn = [next(batches) for _ in range(160)]
    assert all(len(b) == 64 and len(set(b)) == 64 for b in drawn)
    assert len({i for b in drawn for i in b}) > 0.95 * len(prompts)  # 10,240 draws reach nearly every prompt

    def padded(batch):
        return max(len(prompts[i]) for i in batch) * len(batch)

    random_batches = [random.Random(k).sample(range(len(prompts)), 64) for k in range(160)]
    grouped, plain = sum(map(padded, drawn)), sum(map(padded, random_batches))
    assert grouped < 0.7 * plain, (grouped, plain)


def test_the_lm_takes_back_the_core_at_a_fixed_step_after_the_job_ended(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        script = tmp_path / "short_job.py"
        script.write_text("import time; time.sleep(1.0)\n")
        pipeline = Pipeline(load_settings("demo/pipeline.yaml", [f"out_dir={tmp_path}", "parallel=2",
                                                                 "lm.steps_on_one_core=3"]))
        seen = []

        def step(take_back):  # quicker than the job: the take-back at step 3 must wait for it
            for done in range(1, 6):
                seen.append(torch.get_num_threads())
                take_back(done)
            seen.append(torch.get_num_threads())

        pipeline.run_jobs_with(Job("short", str(script), "unused.yaml", []), "step", step)
        assert seen == [1, 1, 1, 2, 2, 2]  # threads before each step: the switch follows step 3, whenever the job ends
        assert pipeline.timings["step"] >= 1.0  # it waited for the job (a 1 s sleep) at step 3
        assert pipeline.timings["short"] >= 1.0 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_the_demo_names_its_tokenizer_pieces():
    import pytest

    from lavis.common.errors import LavisError

    assert load_settings("demo/pipeline.yaml", []).lm.pieces == "bpe"
    with pytest.raises(LavisError, match="lm.pieces: expected 'bpe' or 'unigram', got 'wordpiece'"):
        load_settings("demo/pipeline.yaml", ["lm.pieces=wordpiece"])
