"""The GPU cost of the CLOVER recipe (issue 23), on one CUDA GPU, random weights, nothing downloaded.

    PYTHONPATH=. python -m benchmarks.gpu_recipe                        # both LLMs, a few minutes
    PYTHONPATH=. python -m benchmarks.gpu_recipe --profile runs/recipe_profile   # + profiler traces
    PYTHONPATH=. python -m benchmarks.gpu_recipe --device cpu --sizes tiny --compile-backend eager

At the recipe's shapes: stage 1 (EVA ViT-g + Q-Former, ITC + ITM + ITG, batch 42, 224 px,
captions of Quilt-1M's lengths), stage 2 per LLM (FlanT5-XL, Vicuna-7B; batch 8; batches of the
benchmark instruction mix, ``instruction_mix.py``, stepped in turn) from images and from cached
features, and a QUILT-VQA-shaped evaluation (beam 5, sorted, closed questions ranked). Each runs
eager, then optimised (``model.compile``: the repeated blocks compiled, ``compiled_blocks.py``)
on the same weights, with one step's loss and gradients compared between the two. Per phase:
steady-state samples/s (image and cached paths alternate, ABBA), MFU from FLOPs counted by torch
on the eager step, peak memory; the stage-1 data path's images/s (webdataset shards, draft JPEG
decoding, workers) against what the step consumes; the recipe's GPU-hours per LLM with and
without the feature cache (``recipe_cost.py`` states the counts). ``--profile DIR`` writes a
torch.profiler trace (Chrome JSON + a kernel table) of one pass over each phase's batches, eager
and optimised. Writes ``benchmarks/results_gpu_recipe.json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.flops import counted_flops, peak_tflops
from benchmarks.gpu_throughput import measure_eval, timed, train_step
from benchmarks.instruction_mix import captions, make_pairs, word_counts
from benchmarks.recipe_cost import RecipeCounts, headline, recipe_hours
from benchmarks.sizes import SIZES, ModelSize, make_assets, our_overrides
from benchmarks.step_check import compare, loss_and_grads
from benchmarks.timing import alternate, command_line, emit, machine, sync
from benchmarks.train_step import WORK

HERE = Path(__file__).resolve().parent
Batches = list[dict[str, Any]]


@dataclasses.dataclass
class Settings:
    device: str = "cuda"
    peak: float | None = None  # dense bf16 TFLOP/s of the card (None: from the table in flops.py)
    stage1_batch: int = 42
    stage2_batch: int = 8
    cycle: int = 4  # distinct batches per phase, stepped in turn (the mix's lengths vary)
    rounds: int = 3  # timed passes per path, alternating
    warmup_passes: int = 2  # untimed passes first: compiles and recompiles for new lengths happen here
    compile_mode: str = "default"
    compile_backend: str = "inductor"
    vision_precision: str = "fp16"
    eval_questions: int = 64
    eval_batch: int = 16
    new_tokens: int = 40
    loader_images: int = 512
    loader_side: int = 720  # stored JPEG side in pixels (Quilt-1M frames are 1280x720 and larger)
    loader_workers: int = 8
    profile: Path | None = None


# ---- models and batches ------------------------------------------------------------------------
def build(arch: str, size: ModelSize, settings: Settings) -> Any:
    """Our stage-1 (``blip2``) or stage-2 model at ``size`` with random weights on the device."""
    import lavis  # noqa: F401  (fills the registries)
    from benchmarks.sizes import lm_config
    from lavis.models import MODELS, model_config

    overrides = our_overrides(size, make_assets(WORK / "assets"), "bf16", settings.vision_precision)
    build_args: dict[str, Any] = {}
    if arch == "blip2":
        overrides = {key: overrides[key] for key in ("checkpoint", "vision", "qformer")}
        model_type = "tiny" if size.name.startswith("tiny") else "pretrain"
    else:
        model_type, build_args = "tiny", {"llm_config": lm_config(size.lm)}
    with torch.device(settings.device):
        torch.manual_seed(0)
        model = MODELS.get(arch).from_config(model_config(arch, model_type, overrides), load_weights=False, **build_args)
    return model.to(settings.device).train()


def images(size: ModelSize, count: int, device: str, seed: int) -> torch.Tensor:
    side = size.vision.image_size
    return torch.randn(count, 3, side, side, generator=torch.Generator().manual_seed(seed)).to(device)


def stage1_batches(size: ModelSize, settings: Settings) -> Batches:
    texts = captions(settings.cycle * settings.stage1_batch)
    b = settings.stage1_batch
    return [{"image": images(size, b, settings.device, i), "text_input": texts[i * b : (i + 1) * b]}
            for i in range(settings.cycle)]


def stage2_batches(model: Any, size: ModelSize, settings: Settings) -> tuple[Batches, Batches, dict[str, Any]]:
    """(from images, from cached features, word counts): the same instructions both ways."""
    b = settings.stage2_batch
    pairs = make_pairs(settings.cycle * b, seed=1)
    with_images, cached = [], []
    for i in range(settings.cycle):
        chunk = pairs[i * b : (i + 1) * b]
        text = {"text_input": [p.question for p in chunk], "text_output": [p.answer for p in chunk]}
        pixels = images(size, b, settings.device, i)
        with_images.append({**text, "image": pixels})
        cached.append({**text, "image_embeds": model.encode_image_frozen(pixels).half()})  # as the cache stores them
    return with_images, cached, word_counts(pairs)


# ---- measuring one model, eager then optimised -----------------------------------------------------
def one_pass(step: Callable[[dict[str, Any]], None], batches: Batches) -> Callable[[], None]:
    def run() -> None:
        for batch in batches:
            step(batch)

    return run


def trainable_snapshot(model: Any) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.trainable_named_parameters()}


@torch.no_grad()
def restore(model: Any, snapshot: dict[str, torch.Tensor]) -> None:
    for name, p in model.trainable_named_parameters():
        p.copy_(snapshot[name])


def write_profile(run: Callable[[], None], path: Path, device: str) -> None:
    """A Chrome trace and the top kernels of one pass (idle gaps, syncs, small kernels show here)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as prof:
        run()
        sync()
    path.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(path.with_suffix(".json")))
    table = prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=30)
    path.with_suffix(".txt").write_text(table)


def host_syncs(run: Callable[[], None], device: str) -> int | None:
    """Host synchronisations CUDA reports during ``run`` (torch's sync debug mode); None off CUDA."""
    if not device.startswith("cuda"):
        return None
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


def compile_counters() -> dict[str, int]:
    """Graphs dynamo compiled and graph breaks so far in this process."""
    from torch._dynamo.utils import counters

    return {"compiled_graphs": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(counters["graph_break"].values()))}


def measure_paths(runs: dict[str, Callable[[], None]], samples: int, flops: dict[str, int], settings: Settings,
                  profile_name: str) -> dict[str, Any]:
    """Per path: samples/s (median of alternating rounds), MFU, peak memory, host syncs per pass;
    the seconds of the warm-up passes (where compilation happens)."""
    start = time.perf_counter()
    for _ in range(settings.warmup_passes):
        for run in runs.values():
            run()
    sync()
    out: dict[str, Any] = {"warmup_seconds": time.perf_counter() - start, **compile_counters()}
    for name, run in runs.items():
        _, peak_bytes = timed(run, 1, 0, settings.device)
        out[name] = {"peak_memory_gib": peak_bytes / 2**30 if peak_bytes else None,
                     "host_syncs_per_pass": host_syncs(run, settings.device)}
        if settings.profile:
            write_profile(run, settings.profile / f"{profile_name}_{name}", settings.device)
    rates = alternate(runs, items_per_call=samples, rounds=settings.rounds, calls_per_round=1, warmup=0)
    for name in runs:
        per_s = rates[name]["median"]
        achieved = per_s * flops[name] / samples
        out[name].update(samples_per_s=per_s, samples_per_s_rounds=rates[name]["wall"],
                         achieved_tflops=achieved / 1e12,
                         mfu=achieved / (settings.peak * 1e12) if settings.peak else None)
    return out


def eager_and_optimised(model: Any, paths: dict[str, Batches], settings: Settings, name: str,
                        extra: Callable[[Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The same weights measured eager, then with ``model.compile`` applied; the first path's
    first batch checks that both compute the same loss and gradients."""
    import torch._dynamo

    from lavis.common.optim import build_adamw, fused_adamw_supported
    from lavis.models.compiled_blocks import compile_blocks

    device = settings.device
    amp = device.split(":")[0]
    check_batch = next(iter(paths.values()))[0]

    def check_loss() -> torch.Tensor:
        with torch.autocast(device_type=amp, dtype=torch.bfloat16):
            return model(check_batch)["loss"]

    optimizer = build_adamw(model, lr=1e-5, weight_decay=0.05, fused=fused_adamw_supported(torch.device(device)))
    step = train_step(model, optimizer, device)
    runs = {path: one_pass(step, batches) for path, batches in paths.items()}
    samples = sum(len(next(iter(b.values()))) for b in next(iter(paths.values())))
    start = trainable_snapshot(model)
    reference = loss_and_grads(model, check_loss)
    flops = {path: counted_flops(run) for path, run in runs.items()}  # the eager step's FLOPs; same math compiled
    out: dict[str, Any] = {"flops_per_sample": {path: f / samples for path, f in flops.items()}}
    out["eager"] = measure_paths(runs, samples, flops, settings, f"{name}_eager")
    restore(model, start)  # the extras (evaluation) and the optimised step start from the same weights
    if extra:
        out["eager"].update(extra(model))
    # A fresh dynamo cache per model: the graph limit counts per forward code object, which this
    # model's blocks share with the previous model's (inductor's disk cache keeps reuse cheap).
    torch._dynamo.reset()
    out["compiled_blocks"] = compile_blocks(model, settings.compile_mode, settings.compile_backend)
    out["compiled_vs_eager"] = compare(reference, loss_and_grads(model, check_loss), "bfloat16")
    out["optimised"] = measure_paths(runs, samples, flops, settings, f"{name}_optimised")
    restore(model, start)
    if extra:
        out["optimised"].update(extra(model))
    return out


def headline_figures(result: dict[str, Any], path: str, batch: int) -> dict[str, Any]:
    """The issue's keys (batch, samples_per_s, mfu, peak_memory_gib) from the optimised step."""
    best = result["optimised"][path]
    return {"batch": batch, "samples_per_s": best["samples_per_s"], "mfu": best["mfu"],
            "peak_memory_gib": best["peak_memory_gib"], **result}


# ---- phases -------------------------------------------------------------------------------------
def measure_stage1(size: ModelSize, settings: Settings) -> dict[str, Any]:
    model = build("blip2", size, settings)
    result = eager_and_optimised(model, {"image": stage1_batches(size, settings)}, settings, "stage1")
    del model
    free_memory(settings.device)
    return headline_figures(result, "image", settings.stage1_batch)


def measure_stage2_and_eval(size: ModelSize, settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    model = build(size.arch, size, settings)
    with_images, cached, words = stage2_batches(model, size, settings)
    encode_batch = images(size, settings.stage1_batch, settings.device, 99)
    evaluations: dict[str, Any] = {}

    def cache_build_and_eval(m: Any) -> dict[str, Any]:
        seconds, _ = timed(lambda: m.encode_image_frozen(encode_batch), 3, 1, settings.device)
        if settings.eval_questions:
            m.eval()
            key = "optimised" if "eager" in evaluations else "eager"
            evaluations[key] = measure_eval(m, settings.eval_questions, settings.eval_batch, settings.device,
                                            settings.new_tokens, orders=("sorted_rank_closed",))
            m.train()
        return {"cache_build_images_per_s": len(encode_batch) / seconds}

    result = eager_and_optimised(model, {"image": with_images, "cached": cached}, settings, f"stage2_{size.name}",
                                 cache_build_and_eval)
    del model
    free_memory(settings.device)
    for variant in ("eager", "optimised"):
        paths = result[variant]
        paths["cached_vs_image_per_sample"] = paths["cached"]["samples_per_s"] / paths["image"]["samples_per_s"]
    stage2 = headline_figures(result, "image", settings.stage2_batch)
    stage2["words"] = words
    evaluation: dict[str, Any] = {}
    if evaluations:
        evaluation = {"questions": settings.eval_questions, "batch": settings.eval_batch, **evaluations,
                      "answers_per_s": evaluations["optimised"]["sorted_rank_closed"]["answers_per_s"]}
    return stage2, evaluation


def measure_loader(size: ModelSize, settings: Settings) -> dict[str, Any]:
    """images/s of the stage-1 data path: shards, the train transform (draft JPEG decoding), workers."""
    from benchmarks.data_pipeline import run

    threads = torch.get_num_threads()
    try:
        return run(settings.loader_images, settings.loader_side, settings.loader_workers, settings.stage1_batch,
                   rounds=2, image_size=size.vision.image_size, shard_size=64)
    finally:
        torch.set_num_threads(threads)  # data_pipeline pins the main process to one thread


def free_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def variant_hours(counts: RecipeCounts, stage1: dict[str, Any], stage2: dict[str, Any], evaluation: dict[str, Any],
                  variant: str) -> dict[str, Any]:
    s2 = stage2[variant]
    answers = evaluation[variant]["sorted_rank_closed"]["answers_per_s"] if evaluation else None
    return recipe_hours(counts, stage1[variant]["image"]["samples_per_s"], s2["image"]["samples_per_s"],
                        s2["cached"]["samples_per_s"], s2["cache_build_images_per_s"], answers)


def progress(message: str) -> None:
    """One line on stderr per phase, so a run stopped by a time limit shows where it was."""
    print(f"[gpu_recipe {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def assemble(info: dict[str, Any], settings: Settings, counts: RecipeCounts, models: dict[str, Any],
             loader: dict[str, Any] | None) -> dict[str, Any]:
    plain = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(settings).items()}
    return {"machine": info, "peak_bf16_tflops": settings.peak, "settings": plain,
            "precision": f"vision {settings.vision_precision}, LLM bf16, bf16 autocast",
            "recipe_counts": dataclasses.asdict(counts), "stage1_data": loader, "models": models,
            "complete": loader is not None,
            "headline": headline(models, info["gpu"] or info["cpu"]) if models else None}


def run(sizes: list[str], settings: Settings, counts: RecipeCounts | None = None,
        save: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every phase; ``save`` receives the partial result after each model (``complete: false``)."""
    counts = counts or RecipeCounts()
    info = {"gpu": None, "cuda": None, **machine()}  # the keys stay on a CPU check run
    settings.peak = settings.peak or peak_tflops(info["gpu"] or "")
    first = SIZES[sizes[0]]
    progress(f"stage 1 at {first.name}'s ViT and Q-Former, batch {settings.stage1_batch}: eager, then compiled")
    stage1 = measure_stage1(first, settings)  # the same ViT + Q-Former for every LLM
    models: dict[str, Any] = {}
    for name in sizes:
        progress(f"stage 2 and evaluation, {name}, batch {settings.stage2_batch}: eager, then compiled")
        stage2, evaluation = measure_stage2_and_eval(SIZES[name], settings)
        hours = {v: variant_hours(counts, stage1, stage2, evaluation, v) for v in ("eager", "optimised")}
        models[name] = {"stage1": stage1, "stage2": stage2, "eval": evaluation, "recipe_gpu_hours": hours}
        if save:
            save(assemble(info, settings, counts, models, None))
    progress(f"stage-1 data path: {settings.loader_images} JPEGs, {settings.loader_workers} workers")
    loader = measure_loader(first, settings)
    consumed = {v: stage1[v]["image"]["samples_per_s"] for v in ("eager", "optimised")}
    loader["step_images_per_s"] = consumed
    loader["keeps_up"] = {v: loader["median"] >= rate for v, rate in consumed.items()}
    return assemble(info, settings, counts, models, loader)


def combine(paths: list[Path]) -> dict[str, Any]:
    """One results file from runs of one LLM each (e.g. two calls under a per-command time limit):
    the models of all, everything else from the first."""
    results = [json.loads(path.read_text()) for path in paths]
    merged = {**results[0], "models": {k: v for r in results for k, v in r["models"].items()},
              "combined_from": [str(p) for p in paths]}
    merged["complete"] = all(r.get("complete") for r in results)
    merged["headline"] = headline(merged["models"], merged["machine"]["gpu"] or merged["machine"]["cpu"])
    return merged


def main(argv: list[str] | None = None) -> None:
    from lavis.models.compiled_blocks import COMPILE_MODES

    parser = command_line(__doc__)
    parser.set_defaults(out=HERE / "results_gpu_recipe.json")
    defaults = Settings()
    parser.add_argument("--sizes", nargs="+", default=["flant5xl", "vicuna7b"], choices=sorted(SIZES),
                        help="stage-2 models (stage 1 takes the first one's ViT and Q-Former)")
    parser.add_argument("--device", default="cuda", help="cuda (cpu only to check the script at tiny size)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the card")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES, default=defaults.compile_mode)
    parser.add_argument("--compile-backend", default=defaults.compile_backend,
                        help="torch.compile backend (inductor; eager/aot_eager only to check the logic)")
    for key in ("stage1_batch", "stage2_batch", "cycle", "rounds", "warmup_passes", "eval_questions", "eval_batch",
                "new_tokens", "loader_images", "loader_side", "loader_workers"):
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=getattr(defaults, key))
    parser.add_argument("--profile", type=Path, default=None, help="folder for torch.profiler traces")
    parser.add_argument("--combine", type=Path, nargs="+", default=None, metavar="JSON",
                        help="measure nothing: merge results files of one LLM each into --out")
    args = parser.parse_args(argv)
    if args.combine:
        missing = [str(p) for p in args.combine if not p.is_file()]
        if missing:
            raise SystemExit(f"--combine: no such results file: {', '.join(missing)}")
        emit(combine(args.combine), args.out)
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script measures GPU cost (use --device cpu --sizes tiny to check it)")
    settings = Settings(device=args.device, peak=args.peak_tflops, compile_mode=args.compile_mode,
                        compile_backend=args.compile_backend, profile=args.profile,
                        **{k: getattr(args, k) for k in ("stage1_batch", "stage2_batch", "cycle", "rounds",
                                                          "warmup_passes", "eval_questions", "eval_batch",
                                                          "new_tokens", "loader_images", "loader_side",
                                                          "loader_workers")})
    emit(run(args.sizes, settings, save=lambda partial: emit(partial, args.out, quiet=True)), args.out)


if __name__ == "__main__":
    main()
