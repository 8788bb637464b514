"""Data sets of the run: each builds exactly as the run would build it (files present, every row
parsed and validated), and its first items really load (images decoded, processors applied)."""

from __future__ import annotations

from torch.utils.data import IterableDataset

from lavis.apps.doctor.context import Context
from lavis.apps.doctor.report import FAIL, PASS, WARN
from lavis.common.errors import LavisError
from lavis.datasets.bad_data import SkippedSample

FIRST_ITEMS = 3


def _first_items(dataset) -> tuple[int, list[str]]:
    """(items read, reasons of the skipped ones) for the first few items."""
    if isinstance(dataset, IterableDataset):
        items = []
        for item in dataset:
            items.append(item)
            if len(items) >= FIRST_ITEMS:
                break
    else:
        items = [dataset[i] for i in range(min(FIRST_ITEMS, len(dataset)))]
    return len(items), [str(item) for item in items if isinstance(item, SkippedSample)]


def _images(dataset) -> int | None:
    column = getattr(dataset, "column", None)
    try:
        return len(set(column("image_path"))) if callable(column) else None
    except KeyError:
        return None


def check_data(ctx: Context) -> None:
    from lavis.datasets import BUILDERS
    from lavis.datasets.feature_cache import is_deterministic

    run = ctx.cfg.run
    needed = set(run.test_splits or run.valid_splits) if run.evaluate else {
        *run.train_splits, *run.valid_splits, *run.test_splits}
    found: set[str] = set()
    broken = False
    for name, section in ctx.cfg.datasets.items():
        check = f"data: {name}"
        try:
            splits = BUILDERS.get(name)(section, name).build()
            parts, problems = [], []
            for split, dataset in splits.items():
                read, skipped = _first_items(dataset)
                size = len(dataset) if not isinstance(dataset, IterableDataset) else None
                parts.append(f"{split} {size if size is not None else 'stream'}")
                if read and len(skipped) == read:
                    problems.append(f"{split}: the first {read} items do not load ({skipped[0]})")
                elif skipped:
                    problems.append(f"{split}: {len(skipped)} of the first {read} items skipped ({skipped[0]})")
                images = _images(dataset)
                deterministic = is_deterministic(getattr(dataset, "vis_processor", None))
                ctx.data_sizes.setdefault(name, {})[split] = (size or 0, images or 0, deterministic)
        except LavisError as err:
            ctx.report.add(check, FAIL, str(err))
            broken = True
            continue
        found |= set(splits)
        hard = [p for p in problems if "do not load" in p]
        verdict = FAIL if hard else WARN if problems else PASS
        detail = f"rows: {', '.join(parts)}; first items load" if not problems else "; ".join(problems)
        ctx.report.add(check, verdict, detail)
    missing = sorted(needed - found) if ctx.cfg.datasets and not broken else []
    if missing:
        ctx.report.add("data: splits", FAIL, f"run names split(s) {missing} that no data set provides "
                                             f"(they have: {sorted(found) or 'none'})")
