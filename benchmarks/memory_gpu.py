"""GPU peak memory of full-size stage-2 training and beam search, against the estimate that
``python -m lavis.doctor`` uses (lavis.models.memory).

    PYTHONPATH=. python -m benchmarks.memory_gpu              # compare the recorded measurements
    PYTHONPATH=. python -m benchmarks.memory_gpu --measure    # on a CUDA machine: measure again (~1 min)

Measures ``torch.cuda.max_memory_allocated`` of one AdamW train step (bf16 autocast, vision fp16,
LLM bf16, random weights) for FlanT5-XL and Vicuna-7B at batch 1-8 with short (24-word prompts,
16-word answers) and the longest texts the configs allow (128 / 256 tokens), and of a 5-beam,
40-token generate call. Results: ``benchmarks/memory_gpu.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from benchmarks.sizes import SIZES, build_ours, make_assets
from benchmarks.timing import command_line, emit
from benchmarks.train_step import WORK

HERE = Path(__file__).resolve().parent
RECORDED = HERE / "memory_gpu.json"
GIB = 2**30


def measure(names: list[str]) -> list[dict[str, Any]]:
    from benchmarks.flops import model_tokens
    from benchmarks.gpu_throughput import build
    from benchmarks.inputs import make_batch
    from lavis.common.optim import build_adamw

    records: list[dict[str, Any]] = []
    for name in names:
        model = build(name, "cuda").train()
        optimizer = build_adamw(model, lr=1e-5, weight_decay=0.05, fused=True)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        for prompt_words, answer_words in ((24, 16), (127, 255)):
            for batch in (1, 2, 4, 8):
                data = make_batch(SIZES[name], batch, prompt_words, answer_words)
                samples = {**data.ours(), "image": data.images.cuda()}
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(samples)["loss"]
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                torch.cuda.synchronize()
                records.append({"m": name, "mode": "train", "pw": prompt_words, "aw": answer_words, "b": batch,
                                "tok": model_tokens(model, data.prompts, data.answers).__dict__,
                                "base": base / GIB, "after": torch.cuda.memory_allocated() / GIB,
                                "peak": torch.cuda.max_memory_allocated() / GIB,
                                "res": torch.cuda.max_memory_reserved() / GIB})
        model.eval()
        for batch in (4, 16):
            data = make_batch(SIZES[name], batch, 24, 16)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            with torch.autocast("cuda", dtype=torch.bfloat16), torch.no_grad():
                model.generate({"image": data.images.cuda(), "text_input": data.prompts},
                               num_beams=5, max_new_tokens=40, min_new_tokens=40)
            records.append({"m": name, "mode": "gen", "b": batch, "base": before / GIB,
                            "peak": torch.cuda.max_memory_allocated() / GIB})
        del model, optimizer
        torch.cuda.empty_cache()
    return records


def compare(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each measurement beside lavis.models.memory's estimate for the same batch and text lengths."""
    from lavis.models.memory import estimate, generation_bytes_per_sample, shapes_of, train_bytes_per_sample

    rows = []
    models: dict[str, Any] = {}
    for record in records:
        name = record["m"]
        if name not in models:
            with torch.device("meta"):
                models[name] = build_ours(SIZES[name], make_assets(WORK / "assets"), "bf16", "fp16")
        model = models[name]
        train = record["mode"] == "train"
        guess = estimate(model, train=train, vision_precision="fp16", llm_dtype="bf16")
        # the estimate at the measured token counts instead of the configured maxima
        shapes = shapes_of(model)
        if train:
            shapes = dataclasses.replace(shapes, instruction=record["tok"]["lm_prompt"], answer=record["tok"]["answer"])
            guess.per_sample = train_bytes_per_sample(shapes)
            measured = record["peak"]
        else:  # 24-word prompts (25 tokens); the optimizer state of the train steps before is not counted
            shapes = dataclasses.replace(shapes, instruction=25)
            guess.per_sample = generation_bytes_per_sample(shapes, 5, 40, "bf16")
            measured = record["peak"] - record["base"] + guess.parts["weights"] / GIB
        estimated = guess.allocated(record["b"]) / GIB
        rows.append({"model": name, "mode": record["mode"], "batch": record["b"], "tokens": record.get("tok"),
                     "measured_gib": round(measured, 2), "estimated_gib": round(estimated, 2),
                     "error_percent": round(100 * (estimated - measured) / measured, 1)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__)
    parser.add_argument("--measure", action="store_true", help="measure on this CUDA machine first")
    args = parser.parse_args(argv)
    if args.measure:
        if not torch.cuda.is_available():
            raise SystemExit("--measure needs a CUDA device")
        RECORDED.write_text(json.dumps(measure(["flant5xl", "vicuna7b"]), indent=1))
    emit(compare(json.loads(RECORDED.read_text())), args.out)


if __name__ == "__main__":
    main()
