"""``python -m lavis.datasets.check NAME --root DIR``: is a data set complete and readable?

Reads the data set with its real builder, decodes every image once (DataLoader workers, a
progress bar), and writes ``check.json``: per split the rows, images readable / missing /
unreadable, duplicates and examples of bad images. For Quilt-1M also per-subset image counts and
a lookup CSV of the rows whose image is there (see ``quilt1m``).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lavis.common.checkpoint import atomic_write_text

CHECK_FILE = "check.json"


def check_dataset(name: str, root: Path, options: Sequence[str] = (), workers: int = 4,
                  out_dir: Path | None = None) -> dict[str, Any]:
    """Check one data set; writes ``<out_dir>/check.json`` (default: ``root``) and returns it."""
    from lavis.datasets.builders.quilt1m import Quilt1MBuilder
    from lavis.datasets.builders.quilt1m_wds import Quilt1MWdsBuilder
    from lavis.datasets.builders.standalone import make_builder
    from lavis.datasets.builders.table_builder import TableBuilder
    from lavis.datasets.check.quilt1m import check_quilt1m
    from lavis.datasets.check.shards import check_shards
    from lavis.datasets.check.tables import check_tables

    builder = make_builder(name, root, options)
    out_dir = Path(out_dir or builder.root())
    report: dict[str, Any] = {
        "name": name, "root": str(root), "options": list(options),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if isinstance(builder, Quilt1MBuilder):
        report["splits"], extra = check_quilt1m(builder, workers, out_dir)
        report.update(extra)
    elif isinstance(builder, Quilt1MWdsBuilder):
        report["splits"] = {"train": check_shards(builder.shard_list(), workers, builder.cfg.max_image_pixels)}
    elif isinstance(builder, TableBuilder):
        report["splits"] = check_tables(name, builder, workers)
    else:
        raise TypeError(f"no completeness check for {type(builder).__name__}")
    report["complete"] = all(
        "error" not in s and s.get("missing", 0) == 0 and s.get("unreadable", 0) == 0 and not s.get("broken_shards")
        for s in report["splits"].values()
    )
    atomic_write_text(out_dir / CHECK_FILE, json.dumps(report, indent=1) + "\n")
    return report
