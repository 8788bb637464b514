"""Render the reliability table of docs/reliability.md from ``cases.py``: ``python tests/reliability/render_table.py``
rewrites the block between the markers (``--check`` only says whether it is up to date)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE = HERE.parents[1] / "docs" / "reliability.md"
BEGIN = "<!-- reliability-table:begin (generated from tests/reliability/cases.py by tests/reliability/render_table.py) -->"
END = "<!-- reliability-table:end -->"


def load_cases() -> list:
    spec = importlib.util.spec_from_file_location("reliability_cases", HERE / "cases.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NamedTuple classes need their module registered
    spec.loader.exec_module(module)
    return module.CASES


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(cases: list) -> str:
    lines = [BEGIN]
    areas = list(dict.fromkeys(case.area for case in cases))
    for area in areas:
        lines += ["", f"**{area}**", "", "| bad input or fault | what happens | test |", "|---|---|---|"]
        for case in (c for c in cases if c.area == area):
            file, _, name = case.test.partition("::")
            lines.append(f"| {_cell(case.fault)} | {_cell(case.behaviour)} | `{Path(file).name}::{name}` |")
    lines += ["", END]
    return "\n".join(lines)


def current_block(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the table in docs/reliability.md is out of date")
    args = parser.parse_args(argv)
    text = PAGE.read_text()
    block = render(load_cases())
    if args.check:
        return 0 if current_block(text) == block else 1
    PAGE.write_text(text.replace(current_block(text), block))
    return 0


if __name__ == "__main__":
    sys.exit(main())
