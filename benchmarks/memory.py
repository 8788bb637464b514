"""Memory per model and precision: weights (and, for training, gradients + AdamW states of the
trainable set) computed from exact parameter counts on the meta device; peaks measured where a
machine can run the model (CPU resident memory here; GPU peaks come from gpu_throughput.py).

    python -m benchmarks.memory                       # the computed table
    python -m benchmarks.memory --measure base train  # one measured CPU peak (run it in its own process)
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import torch

from benchmarks.sizes import SIZES, build_ours, lm_config, make_assets, our_overrides
from benchmarks.timing import command_line, emit
from benchmarks.train_step import WORK
from lavis.models.memory import GIB, ParamCounts, count_parameters, training_state_bytes, weight_bytes

# The byte counts and the formula live in lavis.models.memory (python -m lavis.doctor uses them too).

# (label, vision weights, LLM weights); the Q-Former, queries, ln_vision and projection stay fp32.
PRECISIONS = [("vision fp16 + LLM bf16 (default)", "fp16", "bf16"), ("all fp32", "fp32", "fp32")]


def component_params(size_name: str) -> dict[str, int]:
    """Parameters by part at full size, counted without allocating (meta device)."""
    import lavis  # noqa: F401
    from lavis.models import MODELS, model_config

    size = SIZES[size_name]
    assets = make_assets(WORK / "assets")
    cfg = model_config(size.arch, "tiny", our_overrides(size, assets, "bf16", "fp16"))
    with torch.device("meta"):
        model = MODELS.get(size.arch).from_config(cfg, load_weights=False, llm_config=lm_config(size.lm))
    counts = count_parameters(model)
    return {"vision": counts.vision, "ln_vision": counts.ln_vision, "llm": counts.llm, "trainable": counts.trainable,
            "total": counts.total}


def computed(size_name: str) -> list[dict[str, Any]]:
    """Rows (precision, inference GiB, training GiB) of weights and optimizer state, no activations."""
    parts = component_params(size_name)
    counts = ParamCounts(**parts)
    rows = []
    for label, vision, llm in PRECISIONS:
        weights = weight_bytes(counts, vision, llm)
        rows.append({
            "model": size_name, "precision": label,
            "inference_weights_gib": weights / GIB,
            "train_weights_grads_adamw_gib": (weights + training_state_bytes(counts)) / GIB,
            "params": {k: v for k, v in parts.items() if k != "total"},
        })
    return rows


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def measure_here(size_name: str, mode: str, batch: int = 4) -> dict[str, Any]:
    """Peak resident memory of this process for one fp32 train step or one generate call."""
    from benchmarks.inputs import make_batch
    from lavis.common.optim import build_adamw

    torch.set_num_threads(1)
    before = _rss_bytes()
    model = build_ours(SIZES[size_name], make_assets(WORK / "assets"))
    data = make_batch(SIZES[size_name], batch, 24, 16)
    if mode == "train":
        optimizer = build_adamw(model.train(), lr=1e-5, weight_decay=0.05)
        model(data.ours())["loss"].backward()
        optimizer.step()
    else:
        with torch.no_grad():
            model.eval().generate({"image": data.images, "text_input": data.prompts}, num_beams=5,
                                  max_new_tokens=24, min_new_tokens=24)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"model": size_name, "mode": mode, "batch": batch, "precision": "fp32",
            "peak_rss_gib": peak / GIB, "peak_minus_startup_gib": (peak - before) / GIB}


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__)
    parser.add_argument("--measure", nargs=2, metavar=("SIZE", "MODE"), help="SIZE in sizes.py, MODE train|generate")
    args = parser.parse_args(argv)
    if args.measure:
        emit(measure_here(*args.measure), args.out)
    else:
        emit([row for name in ("base", "flant5xl", "vicuna7b") for row in computed(name)], args.out)


if __name__ == "__main__":
    main()
