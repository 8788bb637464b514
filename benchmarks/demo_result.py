"""Keep the figures of the last full `make demo` run where the documentation quotes them from.

    python -m benchmarks.demo_result [--report runs/demo/report.json] [--out benchmarks/results_demo.json]

`runs/demo/` is not in the repository; this copies the report's figures (headline, per attribute,
through the server, goals, timings; not the sample answers) with the commit they were measured at,
so README.md and docs/demo.md quote them with `<!--fig ...-->` markers (benchmarks/quote.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from lavis.common.checkpoint import atomic_write_text

KEPT = ("protocol", "num_closed", "num_open", "num_test_tiles",
        "closed_accuracy", "closed_accuracy_ci95", "closed_accuracy_question_only", "closed_accuracy_blind",
        "open_recall", "open_recall_ci95", "open_recall_question_only", "open_recall_blind",
        "by_attribute", "by_attribute_question_only", "served", "heldout_wording", "validation",
        "density_spearman", "goals", "wall_seconds", "cpu_seconds", "timings_s", "pretraining")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, default=Path("runs/demo/report.json"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_demo.json"))
    parser.add_argument("--commit", default=None, help="the commit the run was made at (default: HEAD)")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text(encoding="utf-8"))
    commit = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                           text=True).stdout.strip()
    kept = {key: report[key] for key in KEPT if key in report}
    if "served" in kept:  # the figures, not every request
        kept["served"] = {k: v for k, v in kept["served"].items() if not isinstance(v, list)}
    result = {"command": "make demo", "commit": commit, "date": time.strftime("%Y-%m-%d"), **kept}
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
