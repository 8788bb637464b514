"""Command line of ``lavis.apps.doctor`` (exit 0: nothing failed; 1: a line FAILed; 2: the command
line itself is wrong, e.g. ``--json`` names a directory)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lavis.doctor", description=__doc__)
    parser.add_argument("--cfg-path", required=True, help="the run YAML to check (as for train.py / evaluate.py)")
    parser.add_argument("--options", nargs="+", default=[], metavar="KEY=VALUE", help="overrides, as for train.py")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="a module registering your own components (repeatable)")
    parser.add_argument("--resume", default=None, help="checkpoint folder the run will resume from, or 'auto'")
    parser.add_argument("--evaluate", action="store_true", help="check it as evaluate.py runs it (run.evaluate=true)")
    parser.add_argument("--checkpoint", default=None, help="weights evaluate.py will be given (model.checkpoint)")
    parser.add_argument("--gpu-memory", type=float, default=None, metavar="GIB",
                        help="check against cards of this size instead of the ones here (or LAVIS_DOCTOR_GPU_MEMORY)")
    parser.add_argument("--gpus", type=int, default=None, help="number of such cards (with --gpu-memory)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    from lavis.apps.doctor.core import run_doctor
    from lavis.common.checkpoint import atomic_write_text
    from lavis.common.errors import LavisError
    from lavis.common.output_paths import os_error_text, writable_file

    try:
        if args.json:
            writable_file(args.json, "--json")  # before the checks run, not after
    except LavisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    options = list(args.options)
    if args.resume:
        options.append(f"run.resume={args.resume}")
    if args.evaluate or args.checkpoint:
        options.append("run.evaluate=true")
    if args.checkpoint:
        options.append(f"model.checkpoint={args.checkpoint}")
    report = run_doctor(args.cfg_path, options, args.imports, args.gpu_memory, args.gpus)
    print(report.render())
    if args.json:
        try:
            atomic_write_text(args.json, json.dumps(report.as_dict(), indent=1) + "\n")
        except OSError as err:
            print(f"error: cannot write --json: {os_error_text(err, args.json)}", file=sys.stderr)
            return 2
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
