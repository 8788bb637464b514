"""Stage-2 training step (forward, backward, AdamW) of our InstructBLIP-T5 vs transformers'
``InstructBlipForConditionalGeneration`` at the same size, batch, precision and threads.

    python -m benchmarks.train_step --size base --batch 4 --rounds 4 --calls 1

``ours_cached`` (reported beside, not in the ratio) is our step from ``image_embeds`` as the
feature cache serves them: what a stage-2 run without augmentation actually executes.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.inputs import Batch, hf_inputs, make_batch, token_lengths
from benchmarks.sizes import SIZES, build_pair, hf_train_mode, trainable_count
from benchmarks.timing import alternate, command_line, emit, ratio

WORK = Path(__file__).resolve().parent / "_work"


def autocast(precision: str, device: str) -> Callable[[], contextlib.AbstractContextManager]:
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return lambda: torch.autocast(device_type=device, dtype=dtype)


def step_fn(model: torch.nn.Module, inputs: dict[str, Any], loss_of: Callable, amp, fused: bool) -> Callable[[], None]:
    """One optimizer step; the same AdamW (param groups of lavis.common.optim) for both models."""
    from lavis.common.optim import build_adamw

    optimizer = build_adamw(model, lr=1e-5, weight_decay=0.05, fused=fused)

    def step() -> None:
        with amp():
            loss = loss_of(model, inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def contenders(size_name: str, batch: Batch, precision: str, device: str = "cpu") -> tuple[dict[str, Callable], dict]:
    """(name -> step, description) for ours, HF, and ours from cached features."""
    ours, hf = build_pair(SIZES[size_name], WORK, device)
    ours, hf = ours.train(), hf_train_mode(hf)

    from lavis.common.optim import fused_adamw_supported

    fused = fused_adamw_supported(torch.device(device))
    amp = autocast(precision, device)
    hf_batch = {k: v.to(device) for k, v in hf_inputs(ours, batch, hf.config.image_token_id).items()}
    with torch.no_grad():  # what the cache stores: fp16 features
        embeds = ours.encode_image_frozen(batch.images.to(device)).half()
    steps = {
        "ours": step_fn(ours, batch.ours(), lambda m, x: m(x)["loss"], amp, fused),
        "hf": step_fn(hf, hf_batch, lambda m, x: m(**x).loss, amp, fused),
        "ours_cached": step_fn(ours, batch.cached(embeds), lambda m, x: m(x)["loss"], amp, fused),
    }
    about = {
        "tokens": token_lengths(hf_batch),
        "trainable_params": {"ours": trainable_count(ours), "hf": trainable_count(hf)},
        "fused_adamw": fused,
        "hf_attn_implementation": hf.config._attn_implementation,
    }
    return steps, about


def run(
    size: str, batch: int = 4, prompt_words: int = 24, answer_words: int = 16, rounds: int = 4, calls: int = 1,
    threads: int = 1, precision: str = "fp32", warmup: int = 1,
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    data = make_batch(SIZES[size], batch, prompt_words, answer_words)
    steps, about = contenders(size, data, precision)
    timings = alternate(steps, items_per_call=batch, rounds=rounds, calls_per_round=calls, warmup=warmup)
    return {
        "size": dataclasses.asdict(SIZES[size]),
        "batch": batch, "threads": threads, "precision": precision, "rounds": rounds, "calls_per_round": calls,
        **about,
        "samples_per_s": timings,
        "ratio_vs_hf": ratio(timings, "ours", "hf"),
        "cached_ratio_vs_hf": ratio(timings, "ours_cached", "hf"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__, size="tiny", batch=4, rounds=4, calls=1, threads=1)
    parser.add_argument("--prompt-words", type=int, default=24)
    parser.add_argument("--answer-words", type=int, default=16)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args(argv)
    emit(run(args.size, args.batch, args.prompt_words, args.answer_words, args.rounds, args.calls, args.threads,
             args.precision), args.out)


if __name__ == "__main__":
    main()
