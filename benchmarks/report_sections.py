"""RESULTS.md sections of the whole-job benchmarks: the stage-2 epoch against the LAVIS-style
loop, length grouping's held-out loss, the QUILT-VQA evaluation, JPEG decoding, the CPU
precision of the frozen encoder and the full-size smoke run."""

from __future__ import annotations

from typing import Any

from benchmarks.report_table import fmt, table


def stage2_section(d: dict[str, Any]) -> list[str]:
    words = d["words"]
    rows = [[name, d["epoch_s"][name], t["median"], t["cpu_median"]] for name, t in d["samples_per_s"].items()]
    pad = d["padding"]
    return [
        f"### Stage-2 epoch, {d['size']}: ours vs the LAVIS-style loop ({d['samples']} instructions, batch "
        f"{d['batch']}, {d['num_workers']} workers, {d['threads']} thread, {d['rounds']} alternated rounds)", "",
        f"Instruction mix (benchmarks/instruction_mix.py, {d['sources']}): questions {words['question']['min']}-"
        f"{words['question']['max']} words (median {fmt(words['question']['median'])}), answers "
        f"{words['answer']['min']}-{words['answer']['max']} (median {fmt(words['answer']['median'])}); one "
        f"{d['frame_px'][0]}x{d['frame_px'][1]} JPEG frame each.", "",
        *table(["contender", "epoch seconds (median)", "samples/s", "samples/s by main-process CPU time"], rows), "",
        f"Ours / LAVIS-style loop: **{fmt(d['speedup_vs_hf'])}x** per epoch; length grouping alone (random / "
        f"grouped batches, same runner): **{fmt(d['length_grouping_speedup'])}x**. Padding share, grouped vs "
        f"random: Q-Former text {fmt(pad['grouped']['qformer_text'])} vs {fmt(pad['random']['qformer_text'])}, "
        f"LM answer {fmt(pad['grouped']['lm_answer'])} vs {fmt(pad['random']['lm_answer'])}. One-off feature "
        f"cache build in the runner's start-up: {fmt(d['cache_build_s'])} s (not in the epoch).", "",
    ]


def projection_section(p: dict[str, Any]) -> list[str]:
    rows = [[name, p["batch"][name], p[name]["lavis_style_pflops"], p[name]["ours_pflops"],
             p[name]["speedup_at_equal_flops_per_s"], p[name]["grouping_alone"]] for name in ("base", "flant5xl", "vicuna7b")]
    return [
        f"Computed, not measured - one epoch of {p['samples']} mix instructions ({p['tokens_per_word']} tokens per "
        "word), training PFLOPs (benchmarks/flops.py) of the LAVIS-style loop (images encoded every step, random "
        "batches) and ours (cached features, length-grouped batches) at the shipped per-GPU batch:", "",
        *table(["size", "batch", "LAVIS-style PFLOPs", "ours PFLOPs", "speedup at equal FLOP/s",
                "of which grouping"], rows), "",
    ]


def grouping_loss_section(d: dict[str, Any]) -> list[str]:
    v = d["val_loss"]
    rows = [[epoch + 1, g, r, diff, noise] for epoch, (g, r, diff, noise) in
            enumerate(zip(v["grouped_mean"], v["random_mean"], v["difference"], v["two_standard_errors"]))]
    finals = [[name, run["val"][-1], run["train"][-1][1] if run["train"] else None] for name, run in d["runs"].items()]
    verdict = ("within noise" if v["within_noise"] else "**outside the noise**") + " at the last epoch"
    verdict += f" (epochs outside it: {v['epochs_outside'] or 'none'})"
    u = d.get("val_loss_unweighted")
    unweighted = [] if not u else [
        f"Without the loss weights (each grouped batch's plain token mean) the last held-out loss is "
        f"{fmt(u['grouped_mean'][-1])} against {fmt(v['random_mean'][-1])} (paired difference "
        f"{fmt(u['difference'][-1])}, 2 x standard error {fmt(u['two_standard_errors'][-1])}): "
        f"{'within noise' if u['within_noise'] else '**outside the noise**'}; epochs outside: "
        f"{u['epochs_outside'] or 'none'}.", ""]
    return [
        f"### Length grouping and the loss (tiny, {d['samples']} instructions, batch {d['batch']}, "
        f"{d['steps_per_run']} steps per run, seeds {d['seeds']})", "",
        "Held-out loss after each epoch (same seeds: same initial weights, data and schedule), mean over seeds:", "",
        *table(["epoch", "grouped", "random", "paired difference", "2 x standard error"], rows), "",
        f"Grouped vs random: {verdict}; the loss fell by {fmt(v['first_to_last_drop'])} from the first to the "
        "last epoch.", "", *unweighted, "Per run (last held-out loss, last logged training loss):", "",
        *table(["run", "held-out loss", "train loss"], finals), "",
    ]


def eval_section(d: dict[str, Any]) -> list[str]:
    rows = [[name, d["seconds"][name], t["median"], t["cpu_median"]] for name, t in d["answers_per_s"].items()]
    extra = [f"{label} {fmt(d[key])}x" for key, label in (("speedup_vs_hf_warm_cache", "with the cache already built"),
                                                         ("speedup_vs_hf_generate_all", "closed questions generated too"))
             if key in d]
    return [
        f"### QUILT-VQA evaluation, {d['size']}: {d['questions']} questions ({d['closed']} closed), batch "
        f"{d['batch']}, beams {d['generation']['num_beams']}, {d['generation']['min_new_tokens']}-"
        f"{d['generation']['max_new_tokens']} new tokens, {d['num_workers']} workers", "",
        *table(["contender", "seconds (median)", "answers/s", "answers/s by main-process CPU time"], rows), "",
        f"Ours (sorted, ranked closed questions, cache built inside the run) / HF generate in file order: "
        f"**{fmt(d['speedup_vs_hf'])}x**; {'; '.join(extra)}. Open answers identical to HF's (token ids): "
        f"{d['same_open_answers']} of {d['open_questions']}; closed answers: {d['closed_answers']}.", "",
    ]


def jpeg_section(d: dict[str, Any]) -> list[str]:
    rows = [[name, t["median"], t["cpu_median"]] for name, t in d["images_per_s"].items()]
    sizes = sorted({f"{r['frame'].split('_')[1]} -> {r['decoded_size'][0]}x{r['decoded_size'][1]}" for r in d["per_frame"]})
    return [
        f"### JPEG decoding: {d['frames']} frames of a real H&E slide ({', '.join('x'.join(map(str, s)) for s in d['frame_sizes'])}, "
        f"quality {d['jpeg_quality']}) -> pathology_image_eval at {d['image_size']} px", "",
        *table(["path", "images/s (median)", "images/s by CPU time"], rows), "",
        f"Draft / plain: **{fmt(d['speedup'])}x**; PSNR of the transform's output against a full decode: min "
        f"{fmt(d['psnr_db_min'])} dB, median {fmt(d['psnr_db_median'])} dB. Decoded sizes: {'; '.join(sizes)}.", "",
    ]


def cpu_precision_section(d: dict[str, Any]) -> list[str]:
    rows = [[name, d["cpu_seconds"][name], d["relative_error_vs_fp32"][name]] for name in d["cpu_seconds"]]
    return [
        f"### Frozen encoder precision on CPU ({d['encoder']}, {d['blocks']} blocks, batch {d['batch']}, "
        f"{d['threads']} thread)", "",
        *table(["dtype", "CPU seconds (median)", "relative error vs fp32"], rows), "",
        f"This CPU has bf16 instructions: {d['bf16_instructions']}; a frozen fp16 encoder placed on CPU runs in "
        f"**{d['cpu_dtype_for_fp16']}** ({fmt(d['fp16_over_picked'])}x faster than fp16).", "",
    ]


def smoke_section(smoke: dict[str, Any] | None) -> list[str]:
    lines = ["## Full-size smoke run (`make smoke-full`)", ""]
    if not smoke:
        return lines + ["Not run yet: `make smoke-full` (CPU, a few minutes, about 12 GiB of memory).", ""]
    rows = [[name, p["seconds"], p["peak_rss_gib"]] for name, p in smoke["phases"].items()]
    build = smoke["phases"]["build"]
    m = smoke["machine"]
    return lines + [
        f"{smoke['model']}, {smoke['trainable_params']:,} trainable parameters, on {m.get('cpu')} "
        f"(torch threads: {smoke['threads']}), {m.get('date')}, git {m.get('git')}; vision {build['vision_dtype']}, "
        f"LLM {build['llm_dtype']}, steps under bf16 autocast.", "",
        *table(["phase", "seconds", "peak RSS GiB (process so far)"], rows), "",
        f"Total {fmt(smoke['total_s'])} s, peak resident memory **{fmt(smoke['peak_rss_gib'])} GiB**.", "",
    ]
