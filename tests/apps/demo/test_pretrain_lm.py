"""The demo LM's pretraining loop: batches of similar length, and the core it takes back."""

import random
import time

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


def test_the_lm_takes_back_the_core_of_a_job_that_ended(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        script = tmp_path / "short_job.py"
        script.write_text("import time; time.sleep(1.0)\n")
        pipeline = Pipeline(load_settings("demo/pipeline.yaml", [f"out_dir={tmp_path}", "parallel=2"]))
        seen = []

        def step(take_back):
            deadline = time.time() + 60
            while time.time() < deadline:
                seen.append(torch.get_num_threads())
                take_back()
                if torch.get_num_threads() == 2:
                    return
                time.sleep(0.05)

        pipeline.run_jobs_with(Job("short", str(script), "unused.yaml", []), "step", step)
        assert seen[0] == 1 and seen[-1] == 1 and torch.get_num_threads() == 2
        assert "short" in pipeline.timings and "step" in pipeline.timings
    finally:
        torch.set_num_threads(threads)


def test_the_demo_names_its_tokenizer_pieces():
    import pytest

    from lavis.common.errors import LavisError

    assert load_settings("demo/pipeline.yaml", []).lm.pieces == "bpe"
    with pytest.raises(LavisError, match="lm.pieces: expected 'bpe' or 'unigram', got 'wordpiece'"):
        load_settings("demo/pipeline.yaml", ["lm.pieces=wordpiece"])
