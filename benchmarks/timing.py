"""Fair timing: contenders alternate (ABBA order, so slow drifts of a shared machine hit both),
each round times a few steps, and results are medians over rounds.

Both wall-clock and process CPU time are recorded: wall time is what a user waits for (the
headline); CPU time shows whether a difference comes from the code or from other load on the
machine (with one thread, CPU time is the work done).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def alternate(
    contenders: dict[str, Callable[[], Any]],
    *,
    items_per_call: int,
    rounds: int,
    calls_per_round: int,
    warmup: int = 1,
) -> dict[str, dict[str, Any]]:
    """Time each contender ``rounds`` times (order reversed every other round).

    Returns per contender: items/s per round (wall and CPU) and their medians.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    sync()
    out: dict[str, dict[str, Any]] = {name: {"wall": [], "cpu": []} for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls_per_round):
                contenders[name]()
            sync()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            items = items_per_call * calls_per_round
            out[name]["wall"].append(items / wall)
            out[name]["cpu"].append(items / max(cpu, 1e-9))
    for record in out.values():
        record["median"] = statistics.median(record["wall"])
        record["cpu_median"] = statistics.median(record["cpu"])
    return out


def run_clients(clients: int, client: Callable[[int], None]) -> float:
    """``client(k)`` for k < ``clients``, each on its own thread, all at once; wall seconds until
    the last one returns (the serving benchmarks' concurrent users)."""
    import threading

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def load_run_config(cfg: dict[str, Any], path: Path) -> Any:
    """Write ``cfg`` as a run YAML at ``path`` and load it as the entry points do."""
    import yaml

    from lavis.cli import build_parser, load

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return load(build_parser("bench", None).parse_args(["--cfg-path", str(path)]))


def ratio(result: dict[str, dict[str, Any]], ours: str, theirs: str) -> dict[str, float]:
    """Ours / theirs: of the medians, and the median of the per-round ratios (paired)."""
    a, b = result[ours], result[theirs]
    return {
        "ratio_of_medians": a["median"] / b["median"],
        "median_paired_ratio": statistics.median(x / y for x, y in zip(a["wall"], b["wall"])),
        "cpu_ratio_of_medians": a["cpu_median"] / b["cpu_median"],
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    """Where and with what the numbers were taken."""
    import transformers

    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "git": _git_revision(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def command_line(doc: str | None, **defaults: Any) -> argparse.ArgumentParser:
    """A benchmark's parser: ``--out`` for its JSON, plus the shared options named in ``defaults``
    (``size``, ``batch``, ``rounds``, ``calls``, ``threads``) with those defaults."""
    from benchmarks.sizes import SIZES

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if "size" in defaults:
        parser.add_argument("--size", choices=sorted(SIZES), default=defaults["size"])
    for name in ("batch", "rounds", "calls", "threads"):
        if name in defaults:
            parser.add_argument(f"--{name}", type=int, default=defaults[name])
    parser.add_argument("--out", type=Path, default=None, help="also write the result JSON here")
    return parser


def emit(result: Any, out: Path | None, quiet: bool = False) -> None:
    """Print the result JSON (unless ``quiet``) and write it to ``out``, atomically: a stopped run
    leaves the previous file whole."""
    from lavis.common.checkpoint import atomic_write_text

    text = json.dumps(result, indent=1)
    if out:
        atomic_write_text(out, text)
    if not quiet:
        print(text)
