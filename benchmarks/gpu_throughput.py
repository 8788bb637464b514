"""Full-size stage-2 throughput on one CUDA GPU, random weights, nothing downloaded:
EVA ViT-g (fp16, frozen) + Q-Former + FlanT5-XL / Vicuna-7B (bf16, frozen), bf16 autocast.

    PYTHONPATH=. python -m benchmarks.gpu_throughput            # both models, a few minutes
    PYTHONPATH=. python -m benchmarks.gpu_throughput --sizes flant5xl --batch 32 --peak-tflops 989

Per model: training samples/s from images and from cached features, peak memory of each,
model FLOPs per step (counted by torch, checked against benchmarks/flops.py), MFU against the
card's dense bf16 peak, beam-search answers/s with its peak memory, and a QUILT-VQA-shaped
evaluation (35% closed questions of varied length): answers/s in file order with every question
generated vs sorted by length with closed questions ranked (``--eval-questions 0`` skips it).
``--vision-precision bf16`` runs the frozen ViT in bf16 instead of fp16. Writes
``benchmarks/results_gpu.json``; ``python -m benchmarks.report`` puts it into RESULTS.md.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.flops import counted_flops, model_tokens, peak_tflops, train_flops
from benchmarks.inputs import make_batch
from benchmarks.sizes import SIZES, build_ours, make_assets
from benchmarks.timing import command_line, emit, machine
from benchmarks.train_step import WORK

HERE = Path(__file__).resolve().parent
DEFAULT_BATCH = {"flant5xl": 16, "vicuna7b": 8, "tiny": 4, "tiny_vicuna": 4}


def build(size_name: str, device: str, vision_precision: str = "fp16") -> Any:
    """Our model at ``size_name``, created directly on ``device`` in its run precisions (on CPU a
    frozen fp16 ViT runs in bf16 or fp32: see ``lavis.models.vision.common.cpu_dtype``)."""
    with torch.device(device):
        torch.manual_seed(0)
        model = build_ours(SIZES[size_name], make_assets(WORK / "assets"), "bf16", vision_precision)
    return model.to(device)


def eval_batches(questions: int, batch: int, sort: bool) -> list[tuple[list[int], bool]]:
    """(question indices, closed) batches of a QUILT-VQA-shaped question set: file order with
    every question generated, or sorted (closed first, longest prompt first) with closed ranked."""
    from benchmarks.eval_throughput import question_words

    shape = question_words(questions)
    if not sort:
        return [(list(range(i, min(i + batch, questions))), False) for i in range(0, questions, batch)]
    closed = sorted((i for i, (_, c) in enumerate(shape) if c), key=lambda i: -shape[i][0])
    open_ = sorted((i for i, (_, c) in enumerate(shape) if not c), key=lambda i: -shape[i][0])
    return ([(closed[i : i + batch], True) for i in range(0, len(closed), batch)]
            + [(open_[i : i + batch], False) for i in range(0, len(open_), batch)])


EVAL_ORDERS = {"file_order_generate_all": False, "sorted_rank_closed": True}


def measure_eval(model: Any, questions: int, batch: int, device: str, new_tokens: int = 40,
                 orders: tuple[str, ...] = tuple(EVAL_ORDERS)) -> dict[str, Any]:
    """Answers/s over the same questions: file order, all generated vs sorted, closed ranked
    (``orders``: which of the two)."""
    from benchmarks.eval_throughput import question_words
    from benchmarks.sizes import CORPUS

    words = sorted({w for line in CORPUS for w in line.split()})
    prompts = [" ".join(words[(i + k) % len(words)] for k in range(n)) + "?"
               for i, (n, _) in enumerate(question_words(questions))]
    side = model.visual_encoder.image_size
    amp = device.split(":")[0]
    settings = {"num_beams": 5, "max_new_tokens": new_tokens, "min_new_tokens": min(5, new_tokens)}

    def evaluate(sort: bool) -> None:
        for rows, closed in eval_batches(questions, batch, sort):
            samples = {"image": torch.randn(len(rows), 3, side, side, device=device),
                       "text_input": [prompts[i] for i in rows]}
            with torch.autocast(device_type=amp, dtype=torch.bfloat16), torch.no_grad():
                model.rank_answers(samples) if closed else model.generate(samples, **settings)

    warm = {"image": torch.randn(min(batch, questions), 3, side, side, device=device),
            "text_input": prompts[: min(batch, questions)]}
    with torch.autocast(device_type=amp, dtype=torch.bfloat16), torch.no_grad():
        model.generate(warm, **settings)
        model.rank_answers(warm)
    out: dict[str, Any] = {"questions": questions, "batch": batch, **settings}
    for name in orders:
        seconds, memory = timed(lambda s=EVAL_ORDERS[name]: evaluate(s), 1, 0, device)
        out[name] = {"answers_per_s": questions / seconds, "peak_memory_gib": memory / 2**30 if memory else None}
    if len(orders) == 2:
        out["speedup"] = out["sorted_rank_closed"]["answers_per_s"] / out["file_order_generate_all"]["answers_per_s"]
    return out


def train_step(model: Any, optimizer: Any, device: str) -> Callable[[dict[str, Any]], None]:
    """One training step on a batch: forward under bf16 autocast, backward, AdamW, zero grads."""
    amp = device.split(":")[0]

    def step(samples: dict[str, Any]) -> None:
        with torch.autocast(device_type=amp, dtype=torch.bfloat16):
            loss = model(samples)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed(fn: Callable[[], Any], steps: int, warmup: int, device: str) -> tuple[float, int | None]:
    """(seconds per call, peak bytes allocated during the timed calls or None off CUDA)."""
    cuda = device.startswith("cuda")
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps, torch.cuda.max_memory_allocated() if cuda else None


def measure(size_name: str, batch: int, steps: int = 10, warmup: int = 3, device: str = "cuda",
            peak: float | None = None, new_tokens: int = 40, vision_precision: str = "fp16",
            eval_questions: int = 0) -> dict[str, Any]:
    from lavis.common.optim import build_adamw, fused_adamw_supported

    size = SIZES[size_name]
    model = build(size_name, device, vision_precision).train()
    optimizer = build_adamw(model, lr=1e-5, weight_decay=0.05, fused=fused_adamw_supported(torch.device(device)))
    data = make_batch(size, batch, prompt_words=24, answer_words=16)
    images = data.images.to(device)
    with torch.no_grad():
        embeds = model.encode_image_frozen(images).half()  # what the feature cache serves
    tokens = model_tokens(model, data.prompts, data.answers)
    amp = device.split(":")[0]
    train_on = train_step(model, optimizer, device)

    result: dict[str, Any] = {"batch": batch, "tokens": tokens.__dict__}
    for name, samples, cached in (("train", {**data.ours(), "image": images}, False),
                                  ("train_cached", data.cached(embeds), True)):
        step = functools.partial(train_on, samples)
        seconds, memory = timed(step, steps, warmup, device)
        flops = counted_flops(step)
        result[name] = {
            "samples_per_s": batch / seconds, "peak_memory_gib": memory / 2**30 if memory else None,
            "flops_per_step_counted": flops, "flops_per_step_analytic": train_flops(size, tokens, cached) * batch,
            "achieved_tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / (peak * 1e12) if peak else None,
        }
    model.eval()
    generation = {"num_beams": 5, "max_new_tokens": new_tokens, "min_new_tokens": new_tokens}

    def generate() -> None:
        with torch.autocast(device_type=amp, dtype=torch.bfloat16), torch.no_grad():
            model.generate({"image": images, "text_input": data.prompts}, **generation)

    seconds, memory = timed(generate, max(1, steps // 3), 1, device)
    result["generate"] = {**generation, "answers_per_s": batch / seconds,
                          "peak_memory_gib": memory / 2**30 if memory else None}
    result["feature_cache_speedup"] = result["train_cached"]["samples_per_s"] / result["train"]["samples_per_s"]
    result["vision_dtype"] = str(model.visual_encoder.dtype)
    if eval_questions:
        result["eval"] = measure_eval(model, eval_questions, batch, device, new_tokens)
    return result


def run(sizes: list[str], batch: int | None, steps: int, warmup: int, device: str = "cuda",
        peak: float | None = None, vision_precision: str = "fp16", eval_questions: int = 0,
        new_tokens: int = 40) -> dict[str, Any]:
    info = machine()
    peak = peak or peak_tflops(info.get("gpu", ""))
    models = {}
    for name in sizes:
        models[name] = measure(name, batch or DEFAULT_BATCH[name], steps, warmup, device, peak, new_tokens,
                               vision_precision, eval_questions)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()  # the previous model is gone: give its memory back before the next
    return {"machine": info, "peak_bf16_tflops": peak,
            "precision": f"vision {vision_precision}, LLM bf16, bf16 autocast", "models": models}


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__, batch=0)
    parser.set_defaults(out=HERE / "results_gpu.json")
    parser.add_argument("--sizes", nargs="+", default=["flant5xl", "vicuna7b"], choices=sorted(SIZES))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the card")
    parser.add_argument("--device", default="cuda", help="cuda (cpu only to check the script at tiny size)")
    parser.add_argument("--vision-precision", choices=["fp16", "bf16"], default="fp16")
    parser.add_argument("--eval-questions", type=int, default=None,
                        help="QUILT-VQA-shaped questions for the evaluation figure (default 256 on CUDA, 0 = skip)")
    parser.add_argument("--new-tokens", type=int, default=40, help="beam-search new tokens (exactly this many)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script measures GPU throughput (use --device cpu --sizes tiny to check it)")
    questions = args.eval_questions if args.eval_questions is not None else (256 if args.device.startswith("cuda") else 0)
    emit(run(args.sizes, args.batch or None, args.steps, args.warmup, args.device, args.peak_tflops,
             args.vision_precision, questions, args.new_tokens), args.out)


if __name__ == "__main__":
    main()
