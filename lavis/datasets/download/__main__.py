"""Command line of ``lavis.datasets.download`` (exit 0: downloaded and verified; 1: nothing to
download, the manual steps were printed; 2: an error, printed as one line)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lavis.common.errors import LavisError
from lavis.common.output_paths import os_error_text
from lavis.datasets.download.catalog import HUB, MANUAL, known_names
from lavis.datasets.download.prepare import Request, download_dataset


def _print_manual(name: str) -> None:
    entry = MANUAL[name]
    print(f"{name}: no public download; to get it:")
    for number, step in enumerate(entry.steps, start=1):
        print(f"  {number}. {step}")
    print("Where the files go (then set datasets." + name + ".storage: <root>):")
    for line in entry.layout:
        print(f"  {line}")


def _print_catalog() -> None:
    for name in known_names():
        if name in HUB:
            ds = HUB[name]
            gated = ", gated" if ds.gated else ""
            print(f"{name:20s} {ds.repo_id} (forms: {', '.join(ds.forms)}{gated})")
        else:
            print(f"{name:20s} manual steps (run it to see them)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lavis.datasets.download", description=__doc__)
    parser.add_argument("name", nargs="?", help=f"one of: {', '.join(known_names())}")
    parser.add_argument("--root", type=Path, help="folder to put the data set in (datasets.<name>.storage)")
    parser.add_argument("--form", default=None, help="release form (default: the manifest's, else the first)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit (default: the manifest's commit)")
    parser.add_argument("--update", action="store_true", help="move to the newest commit instead of the pinned one")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the `hf auth login` token; "
                                                      "prefer those: a command line is visible to other users)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the Hub to answer a request (default 60)")
    parser.add_argument("--list", action="store_true", help="list the data sets and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "httpx2", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # one line per request otherwise
    if args.list or not args.name:
        _print_catalog()
        return 0
    if args.name in MANUAL:
        _print_manual(args.name)
        return 1
    if args.name not in HUB:
        print(f"error: unknown data set '{args.name}'; known: {', '.join(known_names())}", file=sys.stderr)
        return 2
    if args.root is None:
        print("error: --root is required (the folder to download into)", file=sys.stderr)
        return 2
    if not args.timeout > 0:
        print(f"error: --timeout must be > 0 seconds, got {args.timeout}", file=sys.stderr)
        return 2
    request = Request(args.name, args.root, args.form, args.revision, args.update, args.token, args.timeout)
    try:
        # each step is printed as it starts (flushed: a pipe or a log file sees it at once)
        manifest = download_dataset(request, log=lambda line: print(line, flush=True))
    except LavisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the disk filled up; a partial file is kept and resumed by the next run
        print(f"error: {os_error_text(err)}; run the command again to resume", file=sys.stderr)
        return 2
    options = HUB[args.name].forms[manifest.form].builder_options
    print(f"{args.name}: {len(manifest.files)} file(s) at commit {manifest.revision} in {args.root} "
          f"(MANIFEST.json); the builder reads: {manifest.layout}")
    print(f"config:  datasets: {{{args.name}: {{storage: {args.root}"
          + "".join(f", {k}: {v}" for k, v in options.items()) + "}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
