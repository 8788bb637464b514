"""What the benchmarks rest on, checked on CPU at tiny size: FLOP formulas against torch's
counter, the HF twin built from the same description, the GPU script's logic, timing order,
memory arithmetic and the report."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def pair(assets):
    from benchmarks.sizes import SIZES, build_hf, build_ours

    torch.manual_seed(0)
    return build_ours(SIZES["tiny"], assets), build_hf(SIZES["tiny"])


@pytest.mark.parametrize("size_name", ["tiny", "tiny_vicuna"])
def test_flop_formulas_equal_what_torch_executes(assets, size_name):
    from benchmarks.flops import counted_flops, forward_flops, model_tokens, train_flops
    from benchmarks.inputs import make_batch
    from benchmarks.sizes import SIZES, build_ours

    size = SIZES[size_name]
    torch.manual_seed(0)
    model = build_ours(size, assets).train()
    batch = make_batch(size, 3, prompt_words=11, answer_words=7)
    tokens = model_tokens(model, batch.prompts, batch.answers)
    assert counted_flops(lambda: model(batch.ours())) == 3 * sum(forward_flops(size, tokens).values())
    assert counted_flops(lambda: model(batch.ours())["loss"].backward()) == 3 * train_flops(size, tokens)
    with torch.no_grad():
        embeds = model.encode_image_frozen(batch.images)
    cached = counted_flops(lambda: model(batch.cached(embeds))["loss"].backward())
    assert cached == 3 * train_flops(size, tokens, cached=True) < 3 * train_flops(size, tokens)


def test_hf_twin_has_our_trainable_set_and_gets_the_same_token_lengths(pair):
    from benchmarks.inputs import IGNORE, hf_inputs, make_batch, token_lengths
    from benchmarks.sizes import SIZES, hf_train_mode, trainable_count

    ours, hf = pair
    assert trainable_count(ours) == trainable_count(hf) > 0
    hf_train_mode(hf)
    assert hf.qformer.training and not hf.language_model.training and not hf.vision_model.training
    trains = {name for name, p in [*hf.vision_model.named_parameters(), *hf.language_model.named_parameters()]
              if p.requires_grad}
    assert trains == {"post_layernorm.weight", "post_layernorm.bias"}  # our ln_vision, which trains
    batch = make_batch(SIZES["tiny"], 2, prompt_words=5, answer_words=3)
    inputs = hf_inputs(ours, batch, hf.config.image_token_id)
    queries = SIZES["tiny"].qformer.queries
    assert (inputs["input_ids"][:, :queries] == hf.config.image_token_id).all()
    ids, _ = ours.bridge.tokenize(batch.prompts, ours.bridge.max_input, "left")
    assert token_lengths(inputs) == {"qformer_text": ours.tokenize(batch.prompts, 128)[0].shape[1],
                                     "lm_input": queries + ids.shape[1], "answer": inputs["labels"].shape[1]}
    assert (inputs["labels"] == IGNORE).eq(inputs["decoder_attention_mask"] == 0).all()
    assert torch.isfinite(hf(**inputs).loss) and torch.isfinite(ours(batch.ours())["loss"])


@pytest.mark.parametrize("size_name", ["base", "flant5xl"])
def test_identical_configs_at_benchmark_and_full_size(assets, size_name):
    from transformers import InstructBlipForConditionalGeneration

    from benchmarks.sizes import SIZES, freeze_like_ours, hf_config, lm_config, our_overrides, trainable_count
    from lavis.models import MODELS, model_config

    size = SIZES[size_name]
    cfg = model_config(size.arch, "tiny", our_overrides(size, assets, "fp32", "fp32"))
    with torch.device("meta"):
        ours = MODELS.get(size.arch).from_config(cfg, load_weights=False, llm_config=lm_config(size.lm))
        hf = InstructBlipForConditionalGeneration(hf_config(size))
    freeze_like_ours(hf)
    assert trainable_count(ours) == trainable_count(hf)
    if size_name == "flant5xl":
        assert trainable_count(ours) == 187_262_464  # InstructBLIP FlanT5-XL's trainable set, ln_vision included
    # HF stores the q/v biases as one qkv bias with a zero key part: one extra width per block.
    hf_vision = sum(p.numel() for p in hf.vision_model.parameters()) - size.vision.depth * size.vision.width
    assert hf_vision == sum(p.numel() for p in [*ours.visual_encoder.parameters(), *ours.ln_vision.parameters()])


def test_gpu_script_logic_runs_at_tiny_size_on_cpu():
    from benchmarks.gpu_throughput import run

    result = run(["tiny"], batch=2, steps=1, warmup=0, device="cpu", peak=1.0, eval_questions=7)
    model = result["models"]["tiny"]
    evaluation = model["eval"]
    assert evaluation["questions"] == 7 and evaluation["speedup"] > 0
    assert evaluation["sorted_rank_closed"]["answers_per_s"] > 0
    for mode in ("train", "train_cached"):
        assert model[mode]["flops_per_step_counted"] == model[mode]["flops_per_step_analytic"] > 0
        assert model[mode]["mfu"] == pytest.approx(model[mode]["achieved_tflops"] / 1.0)
    assert model["train_cached"]["flops_per_step_counted"] < model["train"]["flops_per_step_counted"]
    assert model["generate"]["answers_per_s"] > 0 and model["train"]["peak_memory_gib"] is None


def test_gpu_eval_batches_cover_every_question_once_and_keep_closed_apart():
    from benchmarks.eval_throughput import question_words
    from benchmarks.gpu_throughput import eval_batches

    shape = question_words(50)
    for sort in (False, True):
        batches = eval_batches(50, 8, sort)
        assert sorted(i for rows, _ in batches for i in rows) == list(range(50))
    ranked = [rows for rows, closed in eval_batches(50, 8, True) if closed]
    assert all(shape[i][1] for rows in ranked for i in rows)
    lengths = [shape[i][0] for rows, closed in eval_batches(50, 8, True) if not closed for i in rows]
    assert lengths == sorted(lengths, reverse=True)


def test_peak_table_picks_the_card_variant():
    from benchmarks.flops import peak_tflops

    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA H200") == 989.0
    assert peak_tflops("Some Future Card") is None


def test_alternate_reverses_the_order_every_round_and_reports_medians():
    from benchmarks.timing import alternate, ratio

    calls: list[str] = []
    result = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                       items_per_call=2, rounds=3, calls_per_round=2, warmup=1)
    assert calls == ["a", "b"] + ["a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]
    assert len(result["a"]["wall"]) == 3 and result["a"]["median"] > 0
    assert set(ratio(result, "a", "b")) == {"ratio_of_medians", "median_paired_ratio", "cpu_ratio_of_medians"}


def test_memory_arithmetic_uses_the_exact_counts():
    from benchmarks.memory import GIB, computed

    default, all_fp32 = computed("flant5xl")
    params = default["params"]
    assert params["trainable"] == 187_262_464 and params["vision"] == 985_894_528 and params["llm"] == 2_849_757_184
    # everything kept in fp32 (Q-Former, queries, ln_vision, projection) trains, ln_vision too
    weights = params["vision"] * 2 + params["llm"] * 2 + params["trainable"] * 4
    assert default["inference_weights_gib"] == pytest.approx(weights / GIB)
    assert default["train_weights_grads_adamw_gib"] == pytest.approx((weights + params["trainable"] * 12) / GIB)
    assert all_fp32["inference_weights_gib"] > default["inference_weights_gib"]


def test_report_marks_goals_and_says_when_gpu_figures_are_missing():
    from benchmarks.report import NOT_MEASURED, render

    results = {"train_step_ratio_vs_hf_tiny": 1.2, "train_step_ratio_vs_hf_base": 0.98, "details": {}, "commands": {}}
    text = render(results, None)
    assert NOT_MEASURED in text
    assert "| `train_step_ratio_vs_hf_tiny` | 1.2 |" in text  # a parity figure now, without a goal
    gpu_model = {"batch": 8, "feature_cache_speedup": 2.0, "generate": {"answers_per_s": 3.0, "peak_memory_gib": 9.0},
                 "eval": {"questions": 256, "speedup": 1.9, "file_order_generate_all": {"answers_per_s": 10.0},
                          "sorted_rank_closed": {"answers_per_s": 19.0}},
                 **{mode: {"samples_per_s": 10.0, "mfu": 0.4, "peak_memory_gib": 20.0} for mode in ("train", "train_cached")}}
    gpu = {"machine": {"gpu": "NVIDIA H100 80GB HBM3", "cuda": "12.4", "torch": "2.5", "date": "today"},
           "peak_bf16_tflops": 989.0, "precision": "bf16", "models": {"flant5xl": gpu_model}}
    text = render(results, gpu)
    assert NOT_MEASURED not in text and "NVIDIA H100 80GB HBM3" in text
    assert "| GPU stage-2 MFU (lowest model) | 0.4 | >= 0.35 | yes |" in text
    assert "| flant5xl | 256 | 10 | 19 | 1.9 |" in text


def test_image_key_benchmark_logic_at_small_size(tmp_path, monkeypatch):
    import benchmarks.image_keys as bench
    from benchmarks.report import image_keys_section

    monkeypatch.setattr(bench, "WORK", tmp_path)
    result = bench.run(images=6, rounds=1, weight_mb=1, index_entries=50)
    assert set(result["median_s"]) == {"stat_only", "first_build", "unchanged"}
    assert result["index"]["entries"] == 50 and result["weights"]["bytes"] == 4096 * 4096 * 2
    assert (tmp_path / "image_key_cache" / "image_hashes.arrow").exists()
    assert "content key, unchanged files" in "\n".join(image_keys_section(result))


def test_serve_lengths_asks_each_question_equally_in_a_fixed_mixed_order():
    from collections import Counter

    from benchmarks.serve_lengths import ANSWERS, questions

    asked = questions(64)
    assert Counter(asked) == {q: 16 for q in ANSWERS}
    assert asked == questions(64) and asked != questions(64, seed=1)
    assert asked[:4] != list(ANSWERS)  # shuffled: a wave is not the same four questions every time
