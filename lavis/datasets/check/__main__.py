"""Command line of ``lavis.datasets.check`` (exit 0: every image readable; 1: something is
missing, unreadable or broken, see the table and check.json; 2: an error, printed as one line)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from lavis.common.errors import LavisError

COLUMNS = ("rows", "images", "readable", "missing", "unreadable", "duplicate_rows", "duplicate_question_ids")


def _table(title: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    widths = [max(len(title), *(len(k) for k in rows))] + [max(len(c), 8) for c in COLUMNS]
    lines = ["  ".join([title.ljust(widths[0]), *(c.rjust(w) for c, w in zip(COLUMNS, widths[1:]))])]
    for key, entry in rows.items():
        if "error" in entry:
            lines.append(f"{key.ljust(widths[0])}  error: {entry['error']}")
            continue
        cells = [str(entry.get(c, "-")).rjust(w) for c, w in zip(COLUMNS, widths[1:])]
        lines.append("  ".join([key.ljust(widths[0]), *cells]))
    return lines


def summary(report: dict[str, Any]) -> list[str]:
    lines = _table("split", report["splits"])
    if "subsets" in report:
        lines += ["", *_table("subset", report["subsets"])]
    for split, entry in report["splits"].items():
        for kind, examples in (entry.get("examples") or {}).items():
            for example in examples:
                lines.append(f"{split}: {kind}: {example}")
    if "examples" in report:
        lines += [f"{kind}: {example}" for kind, items in report["examples"].items() for example in items]
    if "readable_csv" in report:
        csv = report["readable_csv"]
        lines.append(f"{csv['rows']} rows with a readable image -> {csv['path']} (use: {csv['use']})")
    return lines


def main(argv: list[str] | None = None) -> int:
    from lavis.datasets.download.catalog import known_names

    parser = argparse.ArgumentParser(prog="python -m lavis.datasets.check", description=__doc__)
    parser.add_argument("name", help=f"a data set builder: {', '.join(known_names())}")
    parser.add_argument("--root", type=Path, required=True, help="the data set's folder (datasets.<name>.storage)")
    parser.add_argument("--options", nargs="*", default=[], metavar="KEY=VALUE",
                        help="keys of datasets.<name>, e.g. format=parquet image_dir=red_circle")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="decoding processes")
    parser.add_argument("--out-dir", type=Path, default=None, help="where check.json goes (default: --root)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import lavis.datasets  # noqa: F401  (fills the builder registry)
    from lavis.common.output_paths import os_error_text, writable_folder
    from lavis.datasets.check import CHECK_FILE, check_dataset

    try:
        if args.workers < 0:
            raise LavisError(f"--workers must be >= 0 (0: decode in this process), got {args.workers}")
        # check.json goes there after every image is decoded: an unwritable folder fails now, not then
        if args.out_dir is not None:
            writable_folder(args.out_dir, "--out-dir")
        elif args.root.is_dir():
            writable_folder(args.root, "--root (where check.json goes; or set --out-dir)")
        report = check_dataset(args.name, args.root, args.options, args.workers, args.out_dir)
    except LavisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. the disk filled up while check.json was written
        print(f"error: {os_error_text(err)}", file=sys.stderr)
        return 2
    print("\n".join(summary(report)))
    print(f"{'complete' if report['complete'] else 'INCOMPLETE'}: wrote {(args.out_dir or args.root) / CHECK_FILE}")
    return 0 if report["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
