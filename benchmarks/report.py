"""RESULTS.md from results.json (CPU, ``run_all``), results_gpu.json (``gpu_throughput``), results_gpu_recipe.json (``gpu_recipe``) and
results_smoke.json (``make smoke-full``).

    python -m benchmarks.report     # re-render after a GPU or smoke run, without re-running the CPU ones
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.report_recipe import recipe_section
from benchmarks.report_sections import (
    cpu_precision_section,
    eval_section,
    grouping_loss_section,
    jpeg_section,
    projection_section,
    smoke_section,
    stage2_section,
)
from benchmarks.report_table import fmt, table

HERE = Path(__file__).resolve().parent
GOALS = {
    "length_grouping_speedup": 1.3,
    "stage2_epoch_speedup_vs_hf_base": 2.5,
    "eval_speedup_vs_hf_base": 2.0,
    "jpeg_decode_speedup": 2.0,
    "jpeg_psnr_db_min": 35.0,
    "gpu_mfu_stage2_step": 0.35,
    "serve_batching_speedup_16": 3.0,
    "serve_mixed_short_p50_speedup": 3.0,
}
# Reported beside the goals as parity checks and context (issue 8's figures): no goal of their own.
PARITY = ("train_step_ratio_vs_hf_tiny", "train_step_ratio_vs_hf_base", "generate_ratio_vs_hf_base",
          "feature_cache_speedup", "data_images_per_s")
NOT_MEASURED = (
    "**Not measured yet**: no GPU was available to the session that wrote this file. On a CUDA machine run "
    "`PYTHONPATH=. python -m benchmarks.gpu_throughput` (a few minutes, random weights, no downloads), then "
    "`python -m benchmarks.report` to put its figures here with the card's name."
)


def headline_rows(results: dict[str, Any], gpu: dict[str, Any] | None) -> list[list[Any]]:
    rows = []
    for key in ("length_grouping_speedup", "stage2_epoch_speedup_vs_hf_base", "eval_speedup_vs_hf_base",
                "jpeg_decode_speedup", "jpeg_psnr_db_min", "serve_batching_speedup_16",
                "serve_mixed_short_p50_speedup", "serve_ttft_ms_p50", "serve_lengths_throughput_ratio", "slide_tiles_per_s",
                "slide_second_question_speedup"):
        value, goal = results.get(key), GOALS.get(key)
        met = "-" if value is None or goal is None else ("yes" if value >= goal else "**no**")
        rows.append([f"`{key}`", value if value is not None else "not measured", f">= {goal}" if goal else "-", met])
    within = results.get("length_grouping_loss_within_noise")
    rows.append(["held-out loss, grouped vs random batches (tiny, same seeds)",
                 "-" if within is None else ("within noise" if within else "**differs**"), "within noise",
                 "-" if within is None else ("yes" if within else "**no**")])
    mfu = [m["train"]["mfu"] for m in (gpu or {}).get("models", {}).values() if m["train"].get("mfu")]
    value = min(mfu) if mfu else None
    met = "-" if value is None else ("yes" if value >= GOALS["gpu_mfu_stage2_step"] else "**no**")
    rows.append(["GPU stage-2 MFU (lowest model)", value if value is not None else "not measured",
                 f">= {GOALS['gpu_mfu_stage2_step']}", met])
    return rows


def parity_rows(results: dict[str, Any]) -> list[list[Any]]:
    return [[f"`{key}`", results[key]] for key in PARITY if key in results]


def train_section(name: str, d: dict[str, Any]) -> list[str]:
    s = d["samples_per_s"]
    size = d["size"]
    rows = [[k, v["median"], v["cpu_median"], ", ".join(f"{x:.3g}" for x in v["wall"])] for k, v in s.items()]
    return [
        f"### Training step, {name} (batch {d['batch']}, {d['threads']} thread, {d['precision']}, "
        f"{d['rounds']} alternated rounds x {d['calls_per_round']} step)",
        "",
        f"Vision {size['vision']['width']}w x {size['vision']['depth']}, Q-Former {size['qformer']['hidden']}w x "
        f"{size['qformer']['layers']}, LM {size['lm']['kind']} {size['lm']['hidden']}w x {size['lm']['layers']}; "
        f"tokens {d['tokens']}; trainable params ours {d['trainable_params']['ours']:,} / HF "
        f"{d['trainable_params']['hf']:,}; fused AdamW: {d['fused_adamw']}; HF attention: {d['hf_attn_implementation']}.",
        "",
        *table(["contender", "samples/s (median)", "samples/s by CPU time", "per round"], rows),
        "",
        f"Ours / HF: {fmt(d['ratio_vs_hf']['ratio_of_medians'])} (paired median "
        f"{fmt(d['ratio_vs_hf']['median_paired_ratio'])}, CPU time {fmt(d['ratio_vs_hf']['cpu_ratio_of_medians'])}); "
        f"ours from cached features / HF: {fmt(d['cached_ratio_vs_hf']['ratio_of_medians'])}.",
        "",
    ]


def cache_section(name: str, d: dict[str, Any]) -> list[str]:
    rows = [[k, d["epoch_s"][k], d["samples_per_s"][k]["median"]] for k in d["epoch_s"]]
    lines = [f"### Stage-2 epoch, {name}: {d['images']} JPEG tiles ({d['source_side_px']} px), batch {d['batch']}, "
             f"{d['num_workers']} workers, real RunnerEpoch", "",
             *table(["epoch", "seconds (median)", "samples/s"], rows), "",
             f"Speedup with the cache: {fmt(d['speedup'])}; one-off cache build (in the runner's start-up): "
             f"{fmt(d['cache_build_s'])} s."]
    if "with_cache_unfused_adamw" in d["epoch_s"]:
        lines.append(f"Runner before/after fused AdamW on CPU (same run, cached epoch): "
                     f"{fmt(d['epoch_s']['with_cache_unfused_adamw'])} s -> {fmt(d['epoch_s']['with_cache'])} s.")
    return lines + [""]


def image_keys_section(k: dict[str, Any]) -> list[str]:
    per = k["ms_per_1000_images"]
    rows = [["previous key: stat + (path, size, mtime)", per["stat_only"]],
            ["content key, first build (read + sha256 every file)", per["first_build"]],
            ["content key, unchanged files (stat + index lookup)", per["unchanged"]]]
    lines = [f"### Feature-cache keys: {k['images']} JPEG tiles ({k['mean_file_kb']:.0f} KB each, page cache warm)", "",
             *table(["keying", "ms per 1,000 images (median)"], rows), "",
             f"First build hashes {fmt(k['first_build_mb_per_s'])} MB/s. Weights digest (every tensor in full): "
             f"{fmt(k['weights']['gb_per_s'])} GB/s, so EVA ViT-g in fp16 takes about "
             f"{fmt(k['weights']['eva_vit_g_fp16_projected_s'])} s per run start."]
    if k.get("index"):
        i = k["index"]
        lines.append(f"Hash index at {i['entries']:,} entries ({fmt(i['file_mb'])} MB): load {fmt(i['load_s'])} s, "
                     f"every entry looked up {fmt(i['lookup_all_s'])} s, one entry added {fmt(i['add_one_s'])} s.")
    return lines + [""]


def memory_section(details: dict[str, Any], gpu: dict[str, Any] | None) -> list[str]:
    rows = [[r["model"], r["precision"], r["inference_weights_gib"], r["train_weights_grads_adamw_gib"]]
            for r in details.get("memory_computed", [])]
    lines = ["## Memory", "", "Computed from exact parameter counts (meta device); weights of frozen parts in the "
             "stated precision, Q-Former/queries/projection/ln_vision in fp32, training adds an fp32 gradient and "
             "two fp32 AdamW moments per trainable parameter. Activations are not included: see the measured rows.",
             "", *table(["model", "precision", "inference GiB", "training GiB (weights+grads+AdamW)"], rows), ""]
    measured = [details[k] for k in ("memory_base_train", "memory_base_generate") if k in details]
    rows = [[m["model"], m["mode"], m["precision"], m["batch"], m["peak_rss_gib"], m["peak_minus_startup_gib"]]
            for m in measured]
    for name, m in (gpu or {}).get("models", {}).items():
        for mode in ("train", "train_cached", "generate"):
            rows.append([name, mode, "vision fp16, LLM bf16", m["batch"], m[mode]["peak_memory_gib"], "-"])
    lines += ["Measured peaks (CPU: resident memory of a fresh process; GPU: `max_memory_allocated`):", "",
              *table(["model", "mode", "precision", "batch", "peak GiB", "peak minus start-up GiB"], rows), ""]
    if not gpu:
        lines += ["Full-size measured peaks: not measured yet (they come from the GPU script).", ""]
    return lines + doctor_estimate_section(details)


def doctor_estimate_section(details: dict[str, Any]) -> list[str]:
    """``python -m lavis.doctor``'s per-GPU estimate against the measured H200 peaks."""
    rows = [[r["model"], r["mode"], r["batch"], _tokens(r.get("tokens")), r["measured_gib"], r["estimated_gib"],
             f"{r['error_percent']:+.1f}%"] for r in details.get("memory_gpu_estimate", [])]
    if not rows:
        return []
    return ["The doctor's per-GPU estimate (`lavis.models.memory`) against GPU peaks measured on an H200 "
            "(`benchmarks/memory_gpu.json`, `python -m benchmarks.memory_gpu --measure` on a CUDA machine; "
            "train: one AdamW step, bf16 autocast; generate: 5 beams, 40 new tokens, 25-token prompts). "
            "The activation coefficients were fitted to these same runs (two text lengths per model), so this "
            "shows the fit and its linearity in batch size, not an independent validation:", "",
            *table(["model", "mode", "batch", "tokens (Q-Former / LLM prompt / answer)", "measured GiB",
                     "estimated GiB", "error"], rows), ""]


def _tokens(tokens: dict[str, int] | None) -> str:
    return "-" if not tokens else f"{tokens['qformer_text']} / {tokens['lm_prompt']} / {tokens['answer']}"


def gpu_section(gpu: dict[str, Any] | None) -> list[str]:
    lines = ["## GPU, full size (EVA ViT-g + Q-Former + FlanT5-XL / Vicuna-7B, random weights, bf16)", ""]
    if not gpu:
        return lines + [NOT_MEASURED, ""]
    info = gpu["machine"]
    rows = []
    for name, m in gpu["models"].items():
        rows.append([name, m["batch"], m["train"]["samples_per_s"], m["train"]["mfu"], m["train"]["peak_memory_gib"],
                     m["train_cached"]["samples_per_s"], m["train_cached"]["mfu"], m["feature_cache_speedup"],
                     m["generate"]["answers_per_s"]])
    lines += [f"Card: **{info.get('gpu')}** (CUDA {info.get('cuda')}, torch {info.get('torch')}), "
              f"{info.get('date')}; peak {gpu['peak_bf16_tflops']} TFLOP/s dense bf16; {gpu['precision']}.", "",
              *table(["model", "batch", "train samples/s", "MFU", "train peak GiB", "cached samples/s", "cached MFU",
                      "cache speedup", "beam-5 answers/s"], rows), ""]
    evals = [[name, m["eval"]["questions"], m["eval"]["file_order_generate_all"]["answers_per_s"],
              m["eval"]["sorted_rank_closed"]["answers_per_s"], m["eval"]["speedup"]]
             for name, m in gpu["models"].items() if m.get("eval")]
    if evals:
        lines += ["Evaluation, QUILT-VQA-shaped questions (35% closed, beam 5):", "",
                  *table(["model", "questions", "file order, all generated (answers/s)",
                          "sorted, closed ranked (answers/s)", "speedup"], evals), ""]
    return lines


def serve_section(d: dict[str, Any]) -> list[str]:
    rows = [[clients, d["batching"][clients]["answers_per_s"], d["max_batch_1"][clients]["answers_per_s"],
             d["speedup"][clients], d["batching"][clients]["p50_ms"], d["batching"][clients]["p95_ms"],
             d["max_batch_1"][clients]["p50_ms"], d["max_batch_1"][clients]["p95_ms"], d["batching"][clients]["mean_batch"],
             d["cpu_per_answer_ratio"][clients]] for clients in d["speedup"]]
    return [f"### Serving: dynamic batching vs `--max-batch 1` ({d['model']}; beam {d['num_beams']}, exactly "
            f"{d['new_tokens']} new tokens, server on 1 intra-op thread, {d['rounds']} alternated rounds, medians; "
            "`python -m benchmarks.serve`)", "",
            *table(["clients", "answers/s batching", "answers/s max-batch 1", "speedup (paired)", "p50 ms", "p95 ms",
                     "p50 ms (max-batch 1)", "p95 ms (max-batch 1)", "mean batch", "server CPU per answer, ratio"], rows),
            "", f"Answers identical with and without batching: {d['identical_answers']}.", ""]


def serve_mixed_section(d: dict[str, Any]) -> list[str]:
    keys = ("short_p50_ms", "long_p50_ms", "long_ttft_p50_ms", "answers_per_s", "server_cpu_ms_per_answer",
            "generation_idle_share")
    rows = [[mode, *(("-" if d[mode].get(k) is None else d[mode][k]) for k in keys)] for mode in ("continuous", "wave")]
    lines = [f"### Serving: continuous vs wave batching, short questions among long answers ({d['model']}; "
             f"{d['clients']} streaming clients, half {d['short_tokens']}-token, half {d['long_tokens']}-token answers, "
             f"greedy, {d['rounds']} alternated rounds, medians; `python -m benchmarks.serve_mixed`)", "",
             *table(["batching", "short p50 ms", "long p50 ms", "long first token p50 ms", "answers/s",
                     "server CPU ms per answer", "generation thread idle share"], rows), "",
             f"Short p50 speedup (paired) {d['serve_mixed_short_p50_speedup']:.2f}x, throughput ratio "
             f"{d['throughput_ratio']:.2f}; answers identical in both: {d['identical_answers']}."]
    if "throughput_ratios" in d:
        lines[-1] += (f" Per round: speedups {min(d['short_p50_speedups']):.2f}-{max(d['short_p50_speedups']):.2f}x, "
                      f"throughput ratios {min(d['throughput_ratios']):.2f}-{max(d['throughput_ratios']):.2f} "
                      f"(continuous not slower in {d['rounds_continuous_not_slower']} of {d['rounds']}); "
                      f"server CPU per answer, continuous/wave: {d['server_cpu_ratio']:.2f}.")
    return [*lines, ""]


def serve_lengths_section(d: dict[str, Any]) -> list[str]:
    keys = ("answers_per_s", "tokens_per_s", "all_p50_ms", "short_p50_ms", "server_cpu_ms_per_answer")
    rows = [[mode, *(d[mode][k] for k in keys)] for mode in ("continuous", "wave")]
    tokens, costs = d["answer_tokens"], d["row_costs"]
    return [f"### Serving: continuous vs wave batching, answers of one setting ending at different lengths "
            f"({d['clients']} streaming clients, {tokens['min']}-{tokens['max']} tokens, median {tokens['median']:g}; "
            f"greedy, {d['rounds']} alternated rounds, medians; `python -m benchmarks.serve_lengths`)", "",
            *table(["batching", "answers/s", "tokens/s", "all p50 ms", "shortest p50 ms", "server CPU ms per answer"],
                   rows), "",
            f"Answers/s ratio (paired) {d['serve_lengths_throughput_ratio']:.2f} (per round "
            f"{min(d['throughput_ratios']):.2f}-{max(d['throughput_ratios']):.2f}, continuous not slower in "
            f"{d['rounds_continuous_not_slower']} of {d['rounds']}); p50 speedup, all answers "
            f"{d['all_p50_speedup']:.2f}x, shortest {d['short_p50_speedup']:.2f}x; server CPU per answer, "
            f"continuous/wave {d['server_cpu_ratio']:.2f}; answers identical in both: {d['identical_answers']}. "
            "What a row costs (in process): a decoding step "
            + ", ".join(f"{ms:.2f} ms at {n}" for n, ms in costs["step_ms"].items()) + " rows; a start-up "
            + ", ".join(f"{ms:.1f} ms per request at {n}" for n, ms in costs["start_ms_per_request"].items()) + ".",
            ""]


def render(results: dict[str, Any], gpu: dict[str, Any] | None, smoke: dict[str, Any] | None = None,
           recipe: dict[str, Any] | None = None) -> str:
    d, m = results.get("details", {}), results.get("machine", {})
    lines = ["# Benchmark results", "",
             f"Written by `make bench` (`python -m benchmarks.run_all`) on {m.get('date')}: {m.get('cpu')} "
             f"({m.get('cpu_count')} cores, load average at start {m.get('load_average')}), Python {m.get('python')}, "
             f"torch {m.get('torch')}, transformers {m.get('transformers')}, git {m.get('git')}. "
             "Contenders alternate (ABBA) on a shared machine; figures are medians. See docs/performance.md.", "",
             *[f"Rerun since with `--only {' '.join(u['only'])}` on {u['machine'].get('date')} (load average at "
               f"start {u['machine'].get('load_average')}, git {u['machine'].get('git')}): those figures come from "
               "that run." for u in results.get("updates", [])], "",
             "## Headline", "", *table(["metric", "value", "goal", "met"], headline_rows(results, gpu)), "",
             "Reading them: the time users spend is whole epochs and whole evaluations. Against a LAVIS-style "
             "loop around transformers' model the framework removes work: the frozen encoder's features are "
             "read from the cache instead of decoding and encoding every image every epoch, batches of similar "
             "length waste little on padding, evaluation sorts questions by length and ranks closed questions "
             "instead of beam-searching them, and large JPEGs decode at reduced size. Single steps are the same "
             "kernels on both sides (parity figures below).", "",
             "Parity checks and context (no goal; see the details):", "",
             *table(["metric", "value"], parity_rows(results)), "", "## Details", ""]
    if "stage2_epoch_base" in d:
        lines += stage2_section(d["stage2_epoch_base"])
    if "stage2_flops_projection" in d:
        lines += projection_section(d["stage2_flops_projection"])
    if "grouping_loss_tiny" in d:
        lines += grouping_loss_section(d["grouping_loss_tiny"])
    if "eval_base" in d:
        lines += eval_section(d["eval_base"])
    if "jpeg_decode" in d:
        lines += jpeg_section(d["jpeg_decode"])
    if "cpu_precision" in d:
        lines += cpu_precision_section(d["cpu_precision"])
    for key, label in (("train_step_tiny", "tiny"), ("train_step_base", "base")):
        if key in d:
            lines += train_section(label, d[key])
    if "components_base" in d:
        c = d["components_base"]
        lines += [f"Where the base step goes ({c['unit']}, batch {c['batch']}):", "",
                  *table(["part", "ours", "HF"], [["vision forward", c["vision_forward"]["ours"], c["vision_forward"]["hf"]],
                          ["Q-Former forward+backward", c["qformer_forward_backward"]["ours"], c["qformer_forward_backward"]["hf"]]]),
                  ""]
    if "generate_base" in d:
        g = d["generate_base"]
        lines += [f"### Generation, base (batch {g['batch']}, beams {g['num_beams']}, exactly {g['max_new_tokens']} new "
                  f"tokens, output lengths {g['output_lengths']})", "",
                  *table(["contender", "answers/s (median)", "by CPU time"],
                         [[k, v["median"], v["cpu_median"]] for k, v in g["answers_per_s"].items()]),
                  "", f"Ours / HF: {fmt(g['ratio_vs_hf']['ratio_of_medians'])}.", ""]
    for key, label in (("cache_epoch_base", "base"), ("cache_epoch_tiny", "tiny")):
        if key in d:
            lines += cache_section(label, d[key])
    if "cache_flops_projection" in d:
        p = d["cache_flops_projection"]
        rows = [[n, p[n]["train_tflops_per_sample"], p[n]["cached_tflops_per_sample"], p[n]["speedup_at_equal_flops_per_s"]]
                for n in ("base", "flant5xl", "vicuna7b")]
        lines += [f"Computed, not measured - training TFLOPs per sample (benchmarks/flops.py, tokens {p['tokens']}): "
                  "what the cache removes is the vision forward, so at equal FLOP/s the epoch speeds up by:", "",
                  *table(["size", "from images", "from cached features", "speedup at equal FLOP/s"], rows), ""]
    if "slides_base" in d:
        s = d["slides_base"]
        lines += [f"### Whole-slide analysis, {s['size']} (benchmarks/slides.py: demo slide, {s['tiles']} tissue tiles, "
                  f"batch {s['batch']}, {s['workers']} reader worker, {s['answer_tokens']}-token answers)", "",
                  *table(["question", "tiles/s"], [["first (reads + encoder + Q-Former + LLM)", s["first_tiles_per_s"]],
                                                    ["second (cached features)", s["second_tiles_per_s"]]]),
                  "", f"Second-question speedup {fmt(s['second_question_speedup'])} (end to end, tissue detection and "
                  f"output files included: {fmt(s['end_to_end_speedup'])}).", ""]
    if "data_pipeline" in d:
        p = d["data_pipeline"]
        lines += [f"### Data pipeline: {p['images']} JPEG tiles ({p['source_side_px']} px) in {p['shards']} webdataset "
                  f"shards -> train transform ({p['image_size']} px) -> {p['workers']} workers -> batches of {p['batch']}",
                  "", f"Images/s per pass: {', '.join(f'{x:.0f}' for x in p['images_per_s'])}; median "
                  f"**{fmt(p['median'])}**.", ""]
    if "image_keys" in d:
        lines += image_keys_section(d["image_keys"])
    if "serve_batching" in d:
        lines += serve_section(d["serve_batching"])
    if "serve_mixed" in d:
        lines += serve_mixed_section(d["serve_mixed"])
    if "serve_lengths" in d:
        lines += serve_lengths_section(d["serve_lengths"])
    lines += memory_section(d, gpu) + smoke_section(smoke) + gpu_section(gpu) + recipe_section(recipe)
    lines += ["## Commands", "", *table(["benchmark", "command", "seconds"],
                                         [[k, f"`{v['command']}`", v["seconds"]] for k, v in results.get("commands", {}).items()]), ""]
    return "\n".join(lines)


def _optional(name: str) -> dict[str, Any] | None:
    path = HERE / name
    return json.loads(path.read_text()) if path.exists() else None


def write_report(results: dict[str, Any]) -> None:
    """RESULTS.md from ``results`` plus the GPU and smoke results when their files exist."""
    from lavis.common.checkpoint import atomic_write_text

    atomic_write_text(HERE / "RESULTS.md", render(results, _optional("results_gpu.json"), _optional("results_smoke.json"),
                                                  _optional("results_gpu_recipe.json")))


def main() -> None:
    write_report(json.loads((HERE / "results.json").read_text()))


if __name__ == "__main__":
    main()
