"""The doctor's table: one line per check, each with a verdict and what it found or what to do."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"


@dataclasses.dataclass
class Line:
    check: str
    verdict: str
    detail: str


@dataclasses.dataclass
class Report:
    lines: list[Line] = dataclasses.field(default_factory=list)

    def add(self, check: str, verdict: str, detail: str) -> Line:
        line = Line(check, verdict, detail)
        self.lines.append(line)
        return line

    def extend(self, lines: Iterable[Line]) -> None:
        self.lines.extend(lines)

    @property
    def failed(self) -> list[Line]:
        return [line for line in self.lines if line.verdict == FAIL]

    def line(self, check: str) -> Line:
        """The first line named ``check`` (tests and callers look lines up by name)."""
        return next(line for line in self.lines if line.check == check)

    def render(self, width: int | None = None) -> str:
        width = width or shutil.get_terminal_size((160, 24)).columns
        name_width = max([len("check"), *(len(line.check) for line in self.lines)])
        rows = [f"{'check'.ljust(name_width)}  verdict  detail", f"{'-' * name_width}  -------  ------"]
        for line in self.lines:
            rows.append(f"{line.check.ljust(name_width)}  {line.verdict:<7}  {line.detail}")
        counts = {v: sum(line.verdict == v for line in self.lines) for v in (PASS, WARN, FAIL, SKIP)}
        summary = ", ".join(f"{n} {v.lower()}" for v, n in counts.items() if n)
        rows.append(f"{'FAILED' if counts[FAIL] else 'ready'}: {summary}")
        return "\n".join(rows)

    def as_dict(self) -> dict:
        return {"ok": not self.failed, "lines": [dataclasses.asdict(line) for line in self.lines]}


