"""Which dtype should a frozen fp16 vision encoder run in on CPU? EVA ViT-g blocks (full width,
a few of the 39) at batch 1 in fp16, bf16 and fp32, alternated; the output error of each against
fp32; and what ``lavis.models.vision.common.cpu_dtype`` picks on this machine.

    python -m benchmarks.cpu_precision --blocks 3 --rounds 3
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.timing import alternate, command_line, emit

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def run(blocks: int = 3, rounds: int = 3, threads: int = 1) -> dict[str, Any]:
    import lavis  # noqa: F401
    from lavis.models.vision.base import VISION_ENCODERS
    from lavis.models.vision.common import cpu_dtype

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = {"name": "eva_clip_g", "image_size": 224, "depth": blocks, "precision": "fp32", "freeze": True,
           "pretrained": None}
    reference = VISION_ENCODERS.get("eva_clip_g").from_config(cfg)
    images = torch.randn(1, 3, 224, 224)
    encoders = {}
    for name, dtype in DTYPES.items():  # separate copies: the fp32 reference stays exact
        encoder = VISION_ENCODERS.get("eva_clip_g").from_config(cfg)
        encoder.load_state_dict(reference.state_dict())
        encoders[name] = encoder.to(dtype)
    with torch.no_grad():
        expected = reference(images)
        errors = {name: float((e(images.to(DTYPES[name])).float() - expected).norm() / expected.norm())
                  for name, e in encoders.items()}
        calls = {name: (lambda e=e, d=DTYPES[name]: e(images.to(d))) for name, e in encoders.items()}
        timings = alternate(calls, items_per_call=1, rounds=rounds, calls_per_round=1, warmup=1)
    seconds = {name: 1 / t["cpu_median"] for name, t in timings.items()}
    picked = {v: k for k, v in DTYPES.items()}[cpu_dtype(torch.float16)]
    return {"encoder": "EVA ViT-g (width 1408)", "blocks": blocks, "batch": 1, "threads": threads, "rounds": rounds,
            "cpu_seconds": seconds, "relative_error_vs_fp32": errors, "bf16_instructions":
            bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), "cpu_dtype_for_fp16": picked,
            "fp16_over_picked": seconds["fp16"] / seconds[picked], "timings": timings}


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__, rounds=3, threads=1)
    parser.add_argument("--blocks", type=int, default=3)
    args = parser.parse_args(argv)
    emit(run(args.blocks, args.rounds, args.threads), args.out)


if __name__ == "__main__":
    main()
