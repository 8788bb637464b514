"""``make bench``: every CPU benchmark, each in its own process, then results.json + RESULTS.md.

    python -m benchmarks.run_all            # about 15 minutes on 2 quiet CPU cores
    python -m benchmarks.run_all --only jpeg_decode eval_base

GPU figures come from ``benchmarks/gpu_throughput.py`` (results_gpu.json) when a CUDA machine
has run it; this command never needs one.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Any

from benchmarks.report import GOALS, HERE, write_report

RESULTS = HERE / "_work" / "results"
# name -> module arguments; sizes and repetitions chosen for a 2-core CPU.
COMMANDS: dict[str, list[str]] = {
    # the goals of issue 17: whole epochs, whole evaluations, image decoding
    "stage2_epoch_base": ["benchmarks.stage2_epoch", "--size", "base", "--samples", "32", "--batch", "8",
                          "--rounds", "2"],
    "grouping_loss_tiny": ["benchmarks.grouping_loss", "--seeds", "0", "1", "2", "--epochs", "10", "--samples", "256"],
    "eval_base": ["benchmarks.eval_throughput", "--size", "base", "--questions", "24", "--batch", "8", "--rounds", "2",
                  "--contenders", "ours", "ours_warm_cache", "hf"],
    "jpeg_decode": ["benchmarks.jpeg_decode", "--frames", "4", "--rounds", "5"],
    "cpu_precision": ["benchmarks.cpu_precision", "--blocks", "3", "--rounds", "3"],
    # parity checks and context (issue 8)
    "train_step_tiny": ["benchmarks.train_step", "--size", "tiny", "--batch", "8", "--rounds", "9", "--calls", "10"],
    "train_step_base": ["benchmarks.train_step", "--size", "base", "--batch", "4", "--rounds", "3", "--calls", "1"],
    "components_base": ["benchmarks.components", "--size", "base", "--batch", "4", "--rounds", "2"],
    "generate_base": ["benchmarks.generation", "--size", "base", "--batch", "2", "--rounds", "3"],
    "cache_epoch_base": ["benchmarks.cache_epoch", "--size", "base", "--images", "8", "--batch", "4", "--rounds", "2"],
    "cache_epoch_tiny": ["benchmarks.cache_epoch", "--size", "tiny", "--images", "64", "--batch", "8", "--rounds", "3",
                         "--before-after"],
    "data_pipeline": ["benchmarks.data_pipeline", "--images", "256", "--workers", "2", "--batch", "32"],
    "image_keys": ["benchmarks.image_keys", "--images", "1000", "--rounds", "3"],
    "memory_computed": ["benchmarks.memory"],
    "memory_base_train": ["benchmarks.memory", "--measure", "base", "train"],
    "memory_base_generate": ["benchmarks.memory", "--measure", "base", "generate"],
    "memory_gpu_estimate": ["benchmarks.memory_gpu"],
    "serve_batching": ["benchmarks.serve", "--rounds", "3"],
    "serve_mixed": ["benchmarks.serve_mixed", "--rounds", "9"],
    "serve_lengths": ["benchmarks.serve_lengths", "--rounds", "9"],
    "slides_base": ["benchmarks.slides", "--size", "base", "--rounds", "2"],
}


def run_one(name: str) -> tuple[str, Any, float]:
    """Run one benchmark module in a fresh process; (command line, its JSON, seconds)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    argv = [sys.executable, "-m", *COMMANDS[name], "--out", str(out)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=HERE.parent, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    command = "python -m " + shlex.join(COMMANDS[name])
    if proc.returncode != 0:
        raise RuntimeError(f"{command} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return command, json.loads(out.read_text()), seconds


def headline(details: dict[str, Any]) -> dict[str, Any]:
    """The goal keys and the parity keys, from whichever details were run."""
    picks = {
        "length_grouping_speedup": ("stage2_epoch_base", lambda d: d["length_grouping_speedup"]),
        "stage2_epoch_speedup_vs_hf_base": ("stage2_epoch_base", lambda d: d["speedup_vs_hf"]),
        "length_grouping_loss_within_noise": ("grouping_loss_tiny", lambda d: d["val_loss"]["within_noise"]),
        "eval_speedup_vs_hf_base": ("eval_base", lambda d: d["speedup_vs_hf"]),
        "jpeg_decode_speedup": ("jpeg_decode", lambda d: d["speedup"]),
        "jpeg_psnr_db_min": ("jpeg_decode", lambda d: d["psnr_db_min"]),
        "train_step_ratio_vs_hf_tiny": ("train_step_tiny", lambda d: d["ratio_vs_hf"]["ratio_of_medians"]),
        "train_step_ratio_vs_hf_base": ("train_step_base", lambda d: d["ratio_vs_hf"]["ratio_of_medians"]),
        "generate_ratio_vs_hf_base": ("generate_base", lambda d: d["ratio_vs_hf"]["ratio_of_medians"]),
        "feature_cache_speedup": ("cache_epoch_base", lambda d: d["speedup"]),
        "data_images_per_s": ("data_pipeline", lambda d: d["median"]),
        "serve_batching_speedup_16": ("serve_batching", lambda d: d["serve_batching_speedup_16"]),
        "serve_mixed_short_p50_speedup": ("serve_mixed", lambda d: d["serve_mixed_short_p50_speedup"]),
        "serve_ttft_ms_p50": ("serve_mixed", lambda d: d["serve_ttft_ms_p50"]),
        "serve_lengths_throughput_ratio": ("serve_lengths", lambda d: d["serve_lengths_throughput_ratio"]),
        "slide_tiles_per_s": ("slides_base", lambda d: d["first_tiles_per_s"]),
        "slide_second_question_speedup": ("slides_base", lambda d: d["second_question_speedup"]),
    }
    return {key: pick(details[name]) for key, (name, pick) in picks.items() if name in details}


def cache_projection(details: dict[str, Any]) -> dict[str, Any]:
    """Training FLOPs per sample from images / from cached features at each size (computed, for
    the sizes this machine cannot run), with the token lengths of the base benchmark."""
    from benchmarks.flops import Tokens, train_flops
    from benchmarks.sizes import SIZES

    lengths = details.get("train_step_base", {}).get("tokens", {"qformer_text": 26, "lm_input": 57, "answer": 17})
    tokens = Tokens(lengths["qformer_text"], lengths["lm_input"] - SIZES["base"].qformer.queries, lengths["answer"])
    out: dict[str, Any] = {"tokens": tokens.__dict__}
    for name in ("base", "flant5xl", "vicuna7b"):
        full, cached = train_flops(SIZES[name], tokens), train_flops(SIZES[name], tokens, cached=True)
        out[name] = {"train_tflops_per_sample": full / 1e12, "cached_tflops_per_sample": cached / 1e12,
                     "speedup_at_equal_flops_per_s": full / cached}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(COMMANDS), help="run these (others keep old results)")
    args = parser.parse_args(argv)
    from benchmarks.timing import machine

    previous = json.loads((HERE / "results.json").read_text()) if (HERE / "results.json").exists() else {}
    details = dict(previous.get("details", {})) if args.only else {}
    commands = dict(previous.get("commands", {})) if args.only else {}
    started = machine()
    for name in args.only or list(COMMANDS):
        print(f"[bench] {name} ...", flush=True)
        command, result, seconds = run_one(name)
        details[name], commands[name] = result, {"command": command, "seconds": round(seconds, 1)}
        print(f"[bench] {name}: {seconds:.0f} s", flush=True)
    from benchmarks.stage2_epoch import flops_projection

    details["cache_flops_projection"] = cache_projection(details)
    details["stage2_flops_projection"] = flops_projection()
    # a partial rerun keeps the full run's machine line and says what it replaced, when, where
    machine_line = previous.get("machine", started) if args.only else started
    updates = [*previous.get("updates", []), {"only": args.only, "machine": started}] if args.only else []
    results = {**headline(details), "goals": GOALS, "machine": machine_line, "updates": updates,
               "commands": commands, "details": details}
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_report(results)
    print(json.dumps(headline(details), indent=1))


if __name__ == "__main__":
    main()
