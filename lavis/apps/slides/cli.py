"""``python -m lavis.slides``: ask questions of every tissue tile of a whole-slide image.

    python -m lavis.slides --model runs/stage2/checkpoints/last --slide case1.svs \\
        --question "Is there tumor necrosis?" --out runs/slides/case1 --mpp 0.5
    torchrun --nproc_per_node=4 -m lavis.apps.slides ...   # tiles dealt to 4 processes (GPUs)

Each question gets a folder under --out (tiles table, heatmap.png, regions.geojson, top_tiles.png,
summary.json); --out also holds slide.json, tissue_mask.png and the per-slide feature cache.
Rerun the same command after an interruption to continue.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from lavis.common.errors import LavisError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lavis.slides", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="trained model: run or checkpoint folder, converted or HF folder, or weights file")
    parser.add_argument("--config", default=None, help="model/run YAML when --model is a bare weights file")
    parser.add_argument("--slide", required=True, help="OpenSlide format (.svs .tif .ndpi .mrxs ...) or plain image (.png .jpg .tif)")
    parser.add_argument("--question", action="append", required=True, help="question (repeat for several; one pass over the slide)")
    parser.add_argument("--out", required=True, help="output folder (one slide and tile grid per folder)")
    parser.add_argument("--mode", default="auto", choices=["auto", "closed", "open", "retrieval"],
                        help="closed: P(yes); open: answer text; retrieval: ITC similarity (stage-1 model); "
                             "auto: retrieval for stage 1, closed for yes/no questions, else open")
    res = parser.add_mutually_exclusive_group()
    res.add_argument("--mpp", type=float, default=None, help="microns per pixel the model sees (default 0.5)")
    res.add_argument("--magnification", type=float, default=None, help="objective power the model sees (20 = 0.5 um/px)")
    parser.add_argument("--slide-mpp", type=float, default=None,
                        help="the slide's level-0 microns per pixel, for files that record none (or a wrong one)")
    parser.add_argument("--tile", type=int, default=None, help="tile side in pixels at --mpp (default: the model's image size)")
    parser.add_argument("--stride", type=int, default=None, help="pixels between tiles at --mpp (default: --tile, no overlap)")
    parser.add_argument("--region", default=None, help="analyse only x,y,width,height (level-0 pixels)")
    parser.add_argument("--batch", type=int, default=16, help="tiles per batch (and per resume step)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes reading tiles")
    parser.add_argument("--min-tissue", type=float, default=0.5, help="share of a tile that must be tissue (0..1)")
    parser.add_argument("--keep-pen", action="store_true", help="do not remove green/blue/black pen marks from the mask")
    parser.add_argument("--top-k", type=int, default=8, help="tiles shown in top_tiles.png")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="longest answer (closed and open)")
    parser.add_argument("--beams", type=int, default=1, help="beam search width for open answers")
    parser.add_argument("--table", default="parquet", choices=["parquet", "csv"])
    parser.add_argument("--feature-cache", default=None, help="feature cache folder (default <out>/features); share across --out")
    parser.add_argument("--no-feature-cache", action="store_true", help="do not keep the frozen encoder's outputs")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (under torchrun: the local rank's GPU)")
    parser.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"],
                        help="frozen encoder and LLM dtype (default: the model's own); also the Q-Former's autocast "
                             "(default: bf16 on a GPU, none on the CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lavis.common.dist import destroy_distributed, init_distributed
    from lavis.common.logger import setup_logging

    try:
        from lavis.apps.slides.job import SlideSettings, analyze_slide
        from lavis.apps.slides.plan import parse_region, require_resolution, wanted_mpp
        from lavis.apps.slides.questions import Generation, check_questions, required_capability
        from lavis.apps.slides.reader import open_slide
        from lavis.apps.slides.tissue import TissueSettings
        from lavis.common.dist import resolve_device
        from lavis.common.output_paths import os_error_text, writable_folder
        from lavis.models import load_pretrained

        # inputs that are wrong fail before the model loads
        questions = check_questions(args.question)
        require = required_capability(args.mode)
        wanted_mpp(args.mpp, args.magnification)
        reader = open_slide(args.slide, args.slide_mpp)
        require_resolution(reader.info)
        region = parse_region(args.region)
        device = resolve_device(args.device)
        settings = SlideSettings(
            tile=args.tile, stride=args.stride, mpp=args.mpp, magnification=args.magnification,
            slide_mpp=args.slide_mpp, region=region, batch=args.batch, workers=args.workers,
            tissue=TissueSettings(min_tissue=args.min_tissue, remove_pen=not args.keep_pen),
            generation=Generation(max_new_tokens=args.max_new_tokens, num_beams=args.beams), top_k=args.top_k,
            table=args.table, feature_cache=args.feature_cache, cache_features=not args.no_feature_cache,
            # The Q-Former and heads autocast on GPUs (bf16 unless --precision says otherwise), as in evaluation.
            amp={"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision or ("bf16" if device.type == "cuda" else "")),
            progress=not args.quiet,
        )
        settings.validate()
        writable_folder(args.out, "--out")
        if args.feature_cache and not args.no_feature_cache:
            writable_folder(args.feature_cache, "--feature-cache")
        env = init_distributed(device.type)
        if device.type == "cuda" and env.world_size > 1:
            device = torch.device("cuda", env.local_rank)
        setup_logging()
        loaded = load_pretrained(args.model, device, args.precision, config=args.config, require=require)
        summaries = analyze_slide(loaded, reader, questions, args.out, args.mode, settings)
    except LavisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the disk filled up while writing: the finished batches are kept, rerun to continue
        print(f"error: {os_error_text(err)}; rerun the same command to continue once there is room", file=sys.stderr)
        return 2
    finally:
        destroy_distributed()
    for folder, summary in summaries.items():  # filled on rank 0 only
        rate = summary.get("tiles_per_s")
        print(f"{summary['question']!r} ({summary['mode']}): {summary['tiles']['analysed']} tiles"
              + (f", {rate:.2f} tiles/s" if rate else "") + f" -> {args.out}/{folder}/")
    return 0
