"""The whole-job benchmarks' logic at tiny size (their timings are make bench's, not the tests'):
the instruction mix, the FLOP projection, the stage-2 epoch and evaluation contenders, JPEG
decoding, the loss comparison, the CPU precision probe, the smoke run and the report."""

from __future__ import annotations

import math

import numpy as np
import pytest


def test_instruction_mix_has_the_length_spread_of_the_sources():
    from benchmarks.instruction_mix import ANSWER_WORDS, QUESTION_WORDS, make_pairs, word_counts

    pairs = make_pairs(1500, seed=4)
    assert pairs == make_pairs(1500, seed=4) and pairs != make_pairs(1500, seed=5)
    generated = [p for p in pairs if p.source == "generated"]
    assert 0.55 < len(generated) / len(pairs) < 0.65
    q = [len(p.question.split()) for p in generated]
    a = [len(p.answer.split()) for p in pairs]
    assert QUESTION_WORDS[0] <= min(q) and max(q) <= QUESTION_WORDS[1] and max(q) > 35
    assert ANSWER_WORDS[0] == min(a) and max(a) > 100 and max(a) <= ANSWER_WORDS[1]
    closed = [p for p in pairs if p.answer_type == "CLOSED"]
    assert closed and all(p.source == "template" for p in closed)
    counts = word_counts(pairs)
    assert counts["answer"]["median"] < counts["answer"]["mean"]  # a long tail


def test_flop_projection_credits_the_cache_and_grouping():
    from benchmarks.stage2_epoch import flops_projection

    p = flops_projection(samples=400)
    for name in ("base", "flant5xl", "vicuna7b"):
        assert p[name]["ours_pflops"] < p[name]["lavis_style_pflops"]
        assert 1 < p[name]["grouping_alone"] < p[name]["speedup_at_equal_flops_per_s"]
    # the vision encoder is a larger share of FlanT5-XL's step than of Vicuna-7B's
    assert p["flant5xl"]["speedup_at_equal_flops_per_s"] > p["vicuna7b"]["speedup_at_equal_flops_per_s"]


@pytest.fixture
def work(tmp_path, monkeypatch):
    """Point a benchmark module's work folder at the test's temporary folder."""

    def redirect(module) -> None:
        monkeypatch.setattr(module, "WORK", tmp_path)

    return redirect


def test_stage2_epoch_contenders_run_at_tiny_size(work):
    import benchmarks.stage2_epoch as stage2

    work(stage2)
    result = stage2.run("tiny", samples=12, batch=4, workers=0, rounds=1)
    assert set(result["epoch_s"]) == {"ours", "ours_random_batches", "hf_loop"}
    assert all(s > 0 for s in result["epoch_s"].values())
    pad = result["padding"]
    assert pad["grouped"]["lm_answer"] < pad["random"]["lm_answer"]
    assert result["speedup_vs_hf"] == pytest.approx(result["epoch_s"]["hf_loop"] / result["epoch_s"]["ours"])


def test_hf_loop_batches_are_the_inputs_instructblip_expects(assets):
    import torch

    from benchmarks.inputs import IGNORE
    from benchmarks.sizes import SIZES, build_ours, hf_with_weights_of
    from benchmarks.stage2_epoch import HFCollate

    torch.manual_seed(0)
    ours = build_ours(SIZES["tiny"], assets)
    hf = hf_with_weights_of(ours, SIZES["tiny"])
    images = torch.randn(2, 3, 56, 56)
    batch = HFCollate(ours, hf.config.image_token_id)([(images[0], "what stain", "present"),
                                                       (images[1], "which compartment shows the strongest staining",
                                                        "sheets of atypical cells")])
    queries = SIZES["tiny"].qformer.queries
    assert (batch["input_ids"][:, :queries] == hf.config.image_token_id).all()
    assert (batch["labels"] == IGNORE).eq(batch["decoder_attention_mask"] == 0).all()
    samples = {"image": images, "text_input": ["what stain", "which compartment shows the strongest staining"],
               "text_output": ["present", "sheets of atypical cells"]}
    with torch.no_grad():  # the same weights: the same loss from the same batch
        torch.testing.assert_close(hf.eval()(**batch).loss, ours.eval()(samples)["loss"], atol=1e-4, rtol=1e-4)


def test_eval_contenders_agree_on_every_open_answer(work):
    import benchmarks.eval_throughput as evaluation
    from benchmarks.eval_throughput import QUILT_CLOSED, QUILT_QUESTIONS, question_words, run

    work(evaluation)
    shape = question_words(QUILT_QUESTIONS)
    assert sum(closed for _, closed in shape) == QUILT_CLOSED
    result = run("tiny", questions=10, batch=4, workers=0, rounds=1, contenders=["ours", "hf"])
    assert result["closed"] == round(10 * QUILT_CLOSED / QUILT_QUESTIONS)
    assert result["same_open_answers"] == result["open_questions"] == 10 - result["closed"]
    assert set(result["closed_answers"]) <= {"yes", "no"}
    assert set(result["seconds"]) == {"ours", "hf"}


def test_jpeg_benchmark_measures_speed_and_fidelity(work):
    import benchmarks.jpeg_decode as jpeg

    work(jpeg)
    result = jpeg.run(per_size=1, rounds=1, image_size=224)
    assert result["frames"] == 3 and result["psnr_db_min"] >= 35
    decoded = {r["frame"].split("_")[1]: r["decoded_size"] for r in result["per_frame"]}
    assert decoded == {"1280x720": [640, 360], "1920x1080": [480, 270], "2560x1440": [640, 360]}
    assert set(result["images_per_s"]) == {"plain", "draft"}


def test_loss_comparison_uses_the_seed_spread():
    from benchmarks.grouping_loss import compare

    same = compare({"grouped": [[3.0, 2.0], [3.2, 2.2]], "random": [[3.1, 2.1], [3.1, 2.1]]})
    assert same["within_noise"] and same["difference"] == pytest.approx([0.0, 0.0]) and same["epochs_outside"] == []
    # paired by seed: a steady offset is outside the noise however far apart the seeds are
    apart = compare({"grouped": [[3.1, 2.1], [4.1, 3.1]], "random": [[3.0, 2.0], [4.0, 3.0]]})
    assert not apart["within_noise"] and apart["epochs_outside"] == [1, 2]
    assert not compare({"grouped": [[3.0]], "random": [[3.0]]})["within_noise"]  # one seed: no noise estimate


def test_grouping_loss_runs_a_short_training(work):
    import benchmarks.grouping_loss as grouping_loss

    work(grouping_loss)
    result = grouping_loss.run([0], epochs=1, samples=16, held_out=8, batch=4, images=2)
    assert set(result["runs"]) == {"grouped_seed0", "random_seed0", "grouped_unweighted_seed0"}
    assert all(len(run["val"]) == 1 and math.isfinite(run["val"][0]) for run in result["runs"].values())


def test_cpu_precision_probe_reports_the_choice():
    from benchmarks.cpu_precision import run

    result = run(blocks=1, rounds=1)
    assert set(result["cpu_seconds"]) == {"fp16", "bf16", "fp32"}
    assert result["relative_error_vs_fp32"]["fp32"] == 0 and result["relative_error_vs_fp32"]["bf16"] < 0.05
    assert result["cpu_dtype_for_fp16"] == ("bf16" if result["bf16_instructions"] else "fp32")


def test_smoke_run_logic_at_tiny_size(work):
    import benchmarks.smoke_full as smoke

    work(smoke)
    result = smoke.run("tiny")
    assert set(result["phases"]) == {"build", "step_from_images", "step_from_cached_features", "generate"}
    assert "image_embeds" in result["phases"]["step_from_cached_features"]["batch_keys"]
    assert 5 <= result["phases"]["generate"]["new_tokens"] <= 40 and result["peak_rss_gib"] > 0


def test_report_shows_the_new_goals_and_keeps_parity_figures():
    from benchmarks.report import render

    results = {"length_grouping_speedup": 1.4, "stage2_epoch_speedup_vs_hf_base": 2.1,
               "eval_speedup_vs_hf_base": 2.2, "jpeg_decode_speedup": 2.5, "jpeg_psnr_db_min": 41.8,
               "length_grouping_loss_within_noise": True, "train_step_ratio_vs_hf_base": 0.99,
               "details": {}, "commands": {}}
    text = render(results, None, None)
    assert "| `length_grouping_speedup` | 1.4 | >= 1.3 | yes |" in text
    assert "| `stage2_epoch_speedup_vs_hf_base` | 2.1 | >= 2.5 | **no** |" in text
    assert "| `eval_speedup_vs_hf_base` | 2.2 | >= 2.0 | yes |" in text
    assert "| `jpeg_psnr_db_min` | 41.8 | >= 35.0 | yes |" in text
    assert "| `train_step_ratio_vs_hf_base` | 0.99 |" in text and ">= 1.15" not in text
    assert "Not run yet: `make smoke-full`" in text
    smoke = {"model": "m", "trainable_params": 1, "threads": 1, "machine": {"cpu": "c", "date": "d", "git": "g"},
             "total_s": 9.0, "peak_rss_gib": 11.5,
             "phases": {"build": {"seconds": 1.0, "peak_rss_gib": 8.0, "vision_dtype": "bf16", "llm_dtype": "bf16"}}}
    assert "peak resident memory **11.5 GiB**" in render(results, None, smoke)


def test_draft_padding_fraction_matches_a_hand_count():
    from lavis.runners.length_grouping import padded_fraction

    lengths = np.asarray([1, 3, 2, 2])
    assert padded_fraction([0, 1, 2, 3], lengths, 2) == pytest.approx(1 - 8 / 10)  # batches (1,3) and (2,2)
