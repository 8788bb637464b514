"""How much batching buys at inference, full size on one CUDA GPU (random weights, nothing downloaded).

    PYTHONPATH=. python -m benchmarks.gpu_generate_batch --sizes flant5xl vicuna7b --batches 1 4 16

Per model and batch size: beam-search answers/s (CLOVER's 5 beams, a fixed answer length so every
batch does the same work) and closed-question answers/s by likelihood (``yes_no_probabilities``,
one scoring pass for both verdicts), each with its peak memory. The ratio of batch 16 to batch 1
is what dynamic batching in ``lavis.apps.serve`` can gain on that card. Writes
``benchmarks/results_gpu_batching.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu_throughput import build, timed
from benchmarks.inputs import make_batch
from benchmarks.sizes import SIZES
from benchmarks.timing import command_line, emit, machine

HERE = Path(__file__).resolve().parent


def measure_batch(model: Any, size_name: str, batch: int, new_tokens: int, device: str) -> dict[str, Any]:
    """Beam-search and closed-question answers/s (and peak memory) at one batch size."""
    amp = device.split(":")[0]
    data = make_batch(SIZES[size_name], batch, prompt_words=24, answer_words=8)
    samples = {"image": data.images.to(device), "text_input": data.prompts}
    answers = ["The tissue is dense: yes."] * batch

    def generate() -> None:
        with torch.autocast(device_type=amp, dtype=torch.bfloat16), torch.no_grad():
            model.generate(samples, num_beams=5, max_new_tokens=new_tokens, min_new_tokens=new_tokens)

    def closed() -> None:
        with torch.autocast(device_type=amp, dtype=torch.bfloat16), torch.no_grad():
            model.yes_no_probabilities(samples, answers)

    gen_s, gen_mem = timed(generate, 3, 1, device)
    yes_s, yes_mem = timed(closed, 5, 1, device)
    return {
        "generate_answers_per_s": batch / gen_s, "generate_peak_gib": gen_mem / 2**30 if gen_mem else None,
        "closed_answers_per_s": batch / yes_s, "closed_peak_gib": yes_mem / 2**30 if yes_mem else None,
    }


def measure(size_name: str, batches: list[int], new_tokens: int, device: str) -> dict[str, Any]:
    model = build(size_name, device).eval()
    out: dict[str, Any] = {str(b): measure_batch(model, size_name, b, new_tokens, device) for b in batches}
    low, high = str(min(batches)), str(max(batches))
    out["generate_batching_speedup"] = out[high]["generate_answers_per_s"] / out[low]["generate_answers_per_s"]
    out["closed_batching_speedup"] = out[high]["closed_answers_per_s"] / out[low]["closed_answers_per_s"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__)
    parser.set_defaults(out=HERE / "results_gpu_batching.json")
    parser.add_argument("--sizes", nargs="+", default=["flant5xl", "vicuna7b"], choices=sorted(SIZES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--device", default="cuda", help="cuda (cpu only to check the script at tiny size)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: use --device cpu --sizes tiny to check the script")
    models = {}
    for name in args.sizes:
        models[name] = measure(name, args.batches, args.new_tokens, args.device)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    emit({"machine": machine(), "precision": "vision fp16, LLM bf16, bf16 autocast", "new_tokens": args.new_tokens,
          "beams": 5, "models": models}, args.out)


if __name__ == "__main__":
    main()
