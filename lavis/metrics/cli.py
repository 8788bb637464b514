"""Shared behaviour of the scoring commands: one-line errors, no tracebacks, JSON on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from lavis.common.errors import LavisError


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line (and exits 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run(compute: Callable[[], dict]) -> int:
    """Print ``compute()`` as one JSON object; expected failures become one ``error:`` line, exit 1."""
    try:
        result = compute()
    except (LavisError, OSError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
