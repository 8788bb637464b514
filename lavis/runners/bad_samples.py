"""Unreadable training samples: counted per data pass, summed over ranks, a limit that stops the run.

The collate drops what a dataset could not read (``batch["_skipped"]``); the runner counts them
here on the host, so a step never waits for the device because of them. The count is summed
over ranks (a host-side reduction) at the logging cadence and at the end of each pass over the
data, where a summary goes to the log and ``metrics.jsonl``.
"""

from __future__ import annotations

import logging

from lavis.common.dist import host_all_reduce
from lavis.common.errors import DataError
from lavis.common.logger import JsonlWriter

logger = logging.getLogger(__name__)

EXAMPLES = 5  # unreadable samples named in the summary and in the error


class BadSamples:
    def __init__(self, limit: int, writer: JsonlWriter) -> None:
        self.limit, self.writer = limit, writer
        self.count = 0
        self.examples: list[str] = []

    def add(self, skipped: list[str]) -> None:
        if skipped:
            self.count += len(skipped)
            self.examples.extend(skipped[: max(0, EXAMPLES - len(self.examples))])

    def check(self, epoch: int, step: int, final: bool = False) -> int:
        """The pass's count over all ranks; past ``run.max_bad_samples`` an error. ``final`` (a
        pass's end) also reports it and starts the next pass's count."""
        (total,) = host_all_reduce([self.count], op="sum")
        if total > self.limit:
            raise DataError(
                f"{total} unreadable samples in epoch {epoch} exceed run.max_bad_samples={self.limit}; "
                f"first ones: {self.examples}"
            )
        if final:
            if total:
                logger.warning("epoch %d: skipped %d unreadable samples, e.g. %s", epoch, total, self.examples)
            self.writer.write("data", step, epoch=epoch, skipped=total, examples=self.examples)
            self.count, self.examples = 0, []
        return total
