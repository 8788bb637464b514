"""``python -m lavis.metrics.vqa --protocol {llava_med,llava_med_initial,quilt,strict} --gt GT --pred PRED [--per-item OUT]``

Prints one JSON object: open recall / precision / F1, exact match and BLEU averaged over open
questions and closed accuracy, in percent as the papers print them, plus the question counts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lavis.metrics.cli import OneLineParser, run
from lavis.metrics.protocols import PROTOCOLS
from lavis.metrics.vqa import load_ground_truth, load_predictions, score, write_jsonl


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m lavis.metrics.vqa",
        description="Score VQA answers under a published or the strict protocol.",
    )
    parser.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    parser.add_argument("--gt", required=True, help="LLaVA-Med test JSON or QUILT-VQA *_w_ans.json")
    parser.add_argument("--pred", required=True, help="answer file: JSON lines {question_id, text}")
    parser.add_argument("--per-item", help="write one JSON line of scores per question here")
    args = parser.parse_args(argv)

    def compute() -> dict:
        summary, per_item = score(load_ground_truth(args.gt), load_predictions(args.pred), args.protocol)
        if args.per_item:
            write_jsonl(args.per_item, per_item)
        return summary

    return run(compute)


if __name__ == "__main__":
    sys.exit(main())
