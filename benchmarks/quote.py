"""Figures in README.md and docs/ come from their results files, never typed by hand.

A quoted figure is written in the Markdown as

    <!--fig benchmarks/results.json serve_batching_speedup_16 {:.2f}x-->3.43x<!--/fig-->

(source file, dotted key - list items by number -, Python format). ``python -m benchmarks.quote``
rewrites every quoted value from its source; ``--check`` changes nothing and exits 1 naming each
value that differs or whose key is gone (the test suite runs it, so a figure cannot go stale).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!--fig (?P<source>\S+) (?P<key>\S+) (?P<format>[^>]*?)-->(?P<value>.*?)<!--/fig-->")


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def lookup(data: Any, key: str) -> Any:
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def render(match: re.Match, sources: dict[str, Any]) -> str:
    """The value this marker must show (KeyError / FileNotFoundError when its source lacks it)."""
    name = match["source"]
    if name not in sources:
        sources[name] = json.loads((REPO / name).read_text(encoding="utf-8"))
    value = lookup(sources[name], match["key"])
    return match["format"].format(value)


def quote(write: bool) -> list[str]:
    """Problems found (``--check``) or fixed (``write``), one line each."""
    problems: list[str] = []
    sources: dict[str, Any] = {}
    for path in documents():
        text = path.read_text(encoding="utf-8")

        def replace(match: re.Match, path: Path = path, text: str = text) -> str:
            line = text.count("\n", 0, match.start()) + 1
            where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{line}"
            try:
                wanted = render(match, sources)
            except (KeyError, IndexError, ValueError, FileNotFoundError) as err:
                problems.append(f"{where}: {match['source']} has no usable {match['key']!r} ({type(err).__name__}: {err})")
                return match.group(0)
            if wanted != match["value"]:
                problems.append(f"{where}: {match['key']} quoted as {match['value']!r}, {match['source']} says {wanted!r}")
            return match.group(0).replace(f"-->{match['value']}<!--/fig-->", f"-->{wanted}<!--/fig-->")

        new = MARKER.sub(replace, text)
        if write and new != text:
            path.write_text(new, encoding="utf-8")
    return problems


def quoted_count() -> int:
    return sum(len(MARKER.findall(path.read_text(encoding="utf-8"))) for path in documents())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a quoted figure differs")
    args = parser.parse_args(argv)
    problems = quote(write=not args.check)
    missing = [p for p in problems if "has no usable" in p]
    for line in problems:
        print(line if args.check or line in missing else f"updated: {line}", file=sys.stderr)
    if args.check and problems or missing:
        return 1
    print(f"{quoted_count()} quoted figures {'checked' if args.check else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
