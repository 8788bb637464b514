"""``python -m lavis.metrics.captioning --gt GT.json --pred PRED.jsonl [--spice]``: prints one JSON object."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lavis.metrics.captioning import load_caption_predictions, load_caption_references, score_captions
from lavis.metrics.cli import OneLineParser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m lavis.metrics.captioning", description="COCO caption metrics through pycocoevalcap."
    )
    parser.add_argument("--gt", required=True, help="COCO caption annotations or {image_id, caption} records")
    parser.add_argument("--pred", required=True, help="{image_id, caption} records, one per image")
    parser.add_argument("--spice", action="store_true", help="also SPICE (needs the Stanford CoreNLP jars)")
    args = parser.parse_args(argv)
    return run(
        lambda: score_captions(
            load_caption_references(args.gt), load_caption_predictions(args.pred), args.spice
        )
    )


if __name__ == "__main__":
    sys.exit(main())
