"""Command line of ``generate_instructions.py``: captions in, CLOVER instruction data out.

Exit status: 0 done (or stopped cleanly at --max-cost), 1 some captions are still pending after
API errors (rerun to retry them), or the run produced no instructions, or more than
--max-failed-share of the captions answered gave no usable Q&A pair (a model that ignores the
requested format: see summary.json), 2 bad input or configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from lavis.common.errors import ConfigError, LavisError
from lavis.common.output_lock import OutputLock
from lavis.common.output_paths import os_error_text
from lavis.instructions.client import ChatClient, RetryPolicy, public_url
from lavis.instructions.conversations import chain_into_conversations
from lavis.instructions.filters import PairFilter
from lavis.instructions.generate import CostBudget, JobSettings, RunOutcome, caption_job, run_generation
from lavis.instructions.io import read_captions
from lavis.instructions.outputs import (
    INSTRUCTIONS_FILE,
    LLAVA_FILE,
    PLOT_FILE,
    SUMMARY_FILE,
    build_summary,
    generated_instructions,
    ordered,
    write_instruction_files,
    write_summary,
)
from lavis.instructions.pricing import Price, UsageEstimator, load_prices, resolve_price
from lavis.instructions.protocol import load_protocol
from lavis.instructions.ratelimit import RateLimiter
from lavis.instructions.redact import RedactingFilter
from lavis.instructions.store import RawStore, read_records
from lavis.instructions.templates import build_template_instructions, load_template_bank

logger = logging.getLogger("lavis.instructions")
RAW_FILE = "raw.jsonl"
LOG_FILE = "generation.log"
NO_KEY = "no-key"  # sent to local servers that need no key (the client library requires one)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="generate_instructions.py",
        description="Build CLOVER instruction data from image captions: chat-model generated Q&A "
        "pairs (GPT-3.5 or any OpenAI-compatible server) and/or deterministic templates.",
    )
    data = parser.add_argument_group("input and output")
    data.add_argument("--captions", required=True, type=Path, help="Quilt-1M lookup CSV, or a CSV/JSONL with caption and image path")
    data.add_argument("--out", required=True, type=Path, help="output folder (resumed when it holds a raw.jsonl)")
    data.add_argument("--mode", choices=("generate", "template", "both"), default="both")
    data.add_argument("--caption-field", default="caption", help="column holding the caption (e.g. corrected_text)")
    data.add_argument("--image-field", default=None, help="column holding the image path (default: image_path or image)")
    data.add_argument("--subset", action="append", help="keep these Quilt subsets (repeat or comma-separate)")
    data.add_argument("--split", action="append", help="keep these splits")
    data.add_argument("--pathology", action="append", help="keep captions with any of these pathology labels")
    data.add_argument("--histology-only", action="store_true", help="drop rows flagged not_histology (later Quilt-1M releases)")
    data.add_argument("--limit", type=int, default=None, help="first N captions after filtering")
    data.add_argument("--seed", type=int, default=0, help="template choices and the API's sampling seed")
    gen = parser.add_argument_group("generation")
    gen.add_argument("--model", default="gpt-3.5-turbo")
    gen.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (vLLM)")
    gen.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    gen.add_argument("--prompt", type=Path, default=None, help="protocol YAML (default: configs/instructions/prompts/clover_qa_v1.yaml)")
    gen.add_argument("--workers", type=int, default=4, help="requests in flight")
    gen.add_argument("--rpm", type=float, default=None, help="requests-per-minute limit")
    gen.add_argument("--tpm", type=float, default=None, help="tokens-per-minute limit")
    gen.add_argument("--max-tokens", type=int, default=None, help="reply token limit (default: the protocol's)")
    gen.add_argument("--temperature", type=float, default=None, help="default: the protocol's")
    gen.add_argument("--json-mode", action="store_true", help="send response_format=json_object (servers that support it)")
    gen.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    gen.add_argument("--max-retries", type=int, default=6, help="retries per request on 429/5xx/timeouts")
    gen.add_argument("--parse-retries", type=int, default=2, help="extra replies asked for when one cannot be parsed")
    gen.add_argument("--backoff-base", type=float, default=1.0, help="seconds; doubles per retry, with jitter")
    gen.add_argument("--backoff-max", type=float, default=60.0)
    gen.add_argument("--max-failed-share", type=float, default=0.5,
                     help="exit 1 when more than this share of the captions answered gave no usable pair (0..1)")
    cost = parser.add_argument_group("cost")
    cost.add_argument("--prices", type=Path, default=None, help="price table YAML (default: configs/instructions/prices.yaml)")
    cost.add_argument("--price-in", type=float, default=None, help="USD per 1M prompt tokens (overrides the table)")
    cost.add_argument("--price-out", type=float, default=None, help="USD per 1M completion tokens (overrides the table)")
    cost.add_argument("--max-cost", type=float, default=None, help="stop once this output folder has spent this many USD")
    cost.add_argument("--dry-run", action="store_true", help="estimate tokens and cost; send nothing, write nothing")
    tpl = parser.add_argument_group("templates")
    tpl.add_argument("--templates", type=Path, default=None, help="template bank YAML (default: configs/instructions/templates/default.yaml)")
    tpl.add_argument("--conversations", action="store_true",
                     help="chain each image's template questions into conversations of 2-4 turns (each turn "
                          "carries the earlier ones as history; for models tuned with model.conversation)")
    tpl.add_argument("--umls-names", type=Path, default=None, help="CUI names for med_umls_ids: MRCONSO.RRF or CSV/TSV cui,name")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and rejected pairs to the console")
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("workers", "max_tokens", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("max_retries", "parse_retries"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if not 0 <= args.max_failed_share <= 1:
        parser.error(f"--max-failed-share must be between 0 and 1, got {args.max_failed_share}")
    for name in ("rpm", "tpm", "timeout", "max_cost"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value}")


def _setup_logging(out_dir: Path | None, verbose: bool, secret: str | None) -> None:
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    redact = RedactingFilter([secret] if secret else [])
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        file = logging.FileHandler(out_dir / LOG_FILE, encoding="utf-8")
        file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s: %(message)s"))
        handlers.append(file)
    for handler in handlers:
        handler.addFilter(redact)
        logger.addHandler(handler)


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("subset", "split", "pathology", "histology_only", "limit")
    return {key: getattr(args, key) for key in keys}


def _price_info(price: Price | None) -> dict[str, float] | None:
    return None if price is None else dataclasses.asdict(price)


class _Generation:
    """The generation half of a run: protocol, price, resume state, the worker pool."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.protocol = load_protocol(args.prompt)
        self.price = resolve_price(args.model, load_prices(args.prices), args.price_in, args.price_out)
        if self.price is None and args.max_cost is not None:
            raise ConfigError(f"--max-cost needs a price: model '{args.model}' is not in the price table; pass --price-in and --price-out")
        if self.price is None:
            logger.warning("no price for model '%s': cost is not tracked (pass --price-in/--price-out)", args.model)
        self.estimator = UsageEstimator(self.protocol.messages, self.protocol.example_reply())
        self.raw_path = args.out / RAW_FILE

    def estimate(self, records: list[dict]) -> dict[str, Any]:
        """Dry run: tokens and cost of the captions not yet in raw.jsonl (read-only)."""
        finished = read_records(self.raw_path)
        done = {str(r["caption_id"]) for r in finished}
        self.estimator.calibrate(finished)
        pending = [r for r in records if r["caption_id"] not in done]
        prompt_tokens = sum(self.estimator.prompt_tokens(r["caption"]) for r in pending)
        completion_tokens = round(self.estimator.completion * len(pending))
        price = self.price
        return {
            "model": self.args.model,
            "already_done": len(done),
            "requests": len(pending),
            "estimated_prompt_tokens": prompt_tokens,
            "estimated_completion_tokens": completion_tokens,
            "price_usd_per_1m": _price_info(price),
            "estimated_cost_usd": None if price is None else round(price.cost(prompt_tokens, completion_tokens), 4),
            "calibrated_on_records": self.estimator.calibrated_on,
        }

    def _client(self) -> ChatClient:
        args = self.args
        api_key = os.environ.get(args.api_key_env)
        if not api_key and args.base_url is None:
            raise ConfigError(f"set the API key in the environment variable {args.api_key_env} (or point --base-url to a local server)")
        options: dict[str, Any] = {
            "temperature": self.protocol.temperature if args.temperature is None else args.temperature,
            "seed": args.seed,
        }
        if args.json_mode:
            options["response_format"] = {"type": "json_object"}
        return ChatClient(
            args.model,
            api_key or NO_KEY,
            base_url=args.base_url,
            retry=RetryPolicy(args.max_retries, args.backoff_base, args.backoff_max, args.timeout),
            limiter=RateLimiter(args.rpm, args.tpm),
            request_options=options,
        )

    def run(self, records: list[dict], stop: threading.Event | None = None) -> tuple[list[dict], RunOutcome]:
        """Generate for every caption not yet in raw.jsonl; returns all raw records and this run's outcome."""
        args = self.args
        with RawStore(self.raw_path) as store:
            self.estimator.calibrate(store.records.values())
            earlier = Counter((r.get("model"), r.get("prompt_version")) for r in store.records.values())
            current = (args.model, self.protocol.version)
            for (model, version), count in earlier.items():
                if (model, version) != current:
                    logger.warning("%s holds %d records from model %s / prompt %s; new ones use %s / %s", self.raw_path, count, model, version, *current)
            pending = [r for r in records if r["caption_id"] not in store]
            spent = sum(r.get("cost_usd") or 0.0 for r in store.records.values())
            sample = pending[:1000]
            mean_cost = sum(self.estimator.cost(r["caption"], self.price) for r in sample) / max(1, len(sample))
            settings = JobSettings(args.model, args.max_tokens or self.protocol.max_tokens, args.parse_retries, self.price)
            pair_filter = PairFilter(self.protocol.filter)
            client = self._client()
            try:
                outcome = run_generation(
                    pending,
                    store,
                    lambda record: caption_job(record, self.protocol, pair_filter, client, settings),
                    workers=args.workers,
                    budget=CostBudget(args.max_cost, spent, mean_cost),
                    total=len(pending),
                    progress=not args.no_progress,
                    stop=stop,
                )
            finally:
                client.close()
            return list(store.records.values()), outcome

    def settings(self) -> dict[str, Any]:
        args, price = self.args, self.price
        return {
            "model": args.model,
            "base_url": public_url(args.base_url),
            "prompt_version": self.protocol.version,
            "prompt_sha256": self.protocol.sha256,
            "price_usd_per_1m": _price_info(price),
            "workers": args.workers,
            "rpm": args.rpm,
            "tpm": args.tpm,
            "max_cost": args.max_cost,
        }


def _exit_status(outcome: RunOutcome) -> int:
    if outcome.stopped == "interrupted":
        return 130
    if outcome.pending_errors or (outcome.stopped or "").startswith("fatal"):
        return 1
    return 0


def _unusable(summary: dict[str, Any], outcome: RunOutcome, captions: int, max_failed_share: float) -> str | None:
    """Why the run's output is not what was asked for (printed, exit 1), or None."""
    reasons = ", ".join(f"{kind}: {count}" for kind, count in summary["failures_by_reason"].items()) or "none recorded"
    if summary["counts"]["instructions"] == 0:
        return f"no instructions were produced from {captions} captions (failures by reason: {reasons})"
    if outcome.written and outcome.failed / outcome.written > max_failed_share:
        return (f"{outcome.failed} of the {outcome.written} captions answered in this run gave no usable Q&A pair, "
                f"more than --max-failed-share {max_failed_share:g} (failures by reason: {reasons}); "
                "is the model following the prompt? See raw.jsonl")
    return None


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    records = read_captions(args.captions, args.caption_field, image_field=args.image_field, **_filters(args))
    generation = _Generation(args) if args.mode in ("generate", "both") else None
    bank = None
    if args.mode in ("template", "both"):
        names = {"med_umls_ids": str(args.umls_names)} if args.umls_names else None
        bank = load_template_bank(args.templates, names_files=names)
    if args.dry_run:
        report: dict[str, Any] = {"dry_run": True, "mode": args.mode, "captions": len(records)}
        if generation is not None:
            report.update(generation.estimate(records))
        if bank is not None:
            report["template_instructions"] = len(build_template_instructions(records, args.seed, bank))
        print(json.dumps(report, indent=2))
        return 0
    raw_records: list[dict] = []
    outcome, settings = RunOutcome(), {"mode": args.mode, "captions_file": str(args.captions), "filters": _filters(args), "seed": args.seed}
    if generation is not None:
        raw_records, outcome = generation.run(records, stop)
        settings.update(generation.settings())
    template_items = build_template_instructions(records, args.seed, bank) if bank is not None else []
    if bank is not None:
        settings["template_version"] = bank.version
    if args.conversations:
        template_items = chain_into_conversations(template_items, seed=args.seed)
    conversation = generation is not None and generation.protocol.conversation
    settings["conversations"] = {"template": bool(args.conversations), "generated": conversation}
    instructions = ordered(generated_instructions(raw_records, conversation) + template_items,
                           {r["caption_id"]: r["row"] for r in records})
    write_instruction_files(args.out, instructions)
    finished = {str(r["caption_id"]) for r in raw_records}
    pending_after = sum(r["caption_id"] not in finished for r in records) if generation is not None else 0
    run_section = {"captions": len(records), **dataclasses.asdict(outcome), "pending_after_run": pending_after}
    files = [INSTRUCTIONS_FILE, LLAVA_FILE, SUMMARY_FILE, PLOT_FILE] + ([RAW_FILE, LOG_FILE] if generation else [])
    summary = build_summary(raw_records, instructions, run=run_section, settings=settings, files=files)
    write_summary(args.out, summary)
    cost = summary["cost_usd"]
    print(
        f"{len(instructions)} instructions {summary['counts']['by_source']} in {args.out}; "
        f"cost so far {'unknown' if cost is None else f'${cost:.4f}'}"
        + (f"; stopped: {outcome.stopped}" if outcome.stopped else "")
        + (f"; {pending_after} captions pending (rerun to continue)" if pending_after else "")
    )
    problem = _unusable(summary, outcome, len(records), args.max_failed_share)
    if problem:
        logger.error("%s", problem)
        return max(_exit_status(outcome), 1)
    return _exit_status(outcome)


class _GracefulStop:
    """First SIGINT/SIGTERM: finish the requests in flight, then export. Second: abandon them."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: Any) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()  # no logging here: a signal handler must not take the logging locks

    def __enter__(self) -> _GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    lock = None
    if not args.dry_run:  # --out has one writer at a time (a dry run writes nothing)
        try:
            lock = OutputLock(args.out, "instruction run").acquire()
        except LavisError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    _setup_logging(None if args.dry_run else args.out, args.verbose, os.environ.get(args.api_key_env))
    try:
        with _GracefulStop() as stop:
            return run(args, stop.event)
    except LavisError as err:
        logger.error("%s", err)
        return 2
    except OSError as err:  # e.g. the disk filled up: raw.jsonl keeps every record written, rerun to export
        logger.error("%s; raw.jsonl keeps what was generated, rerun to continue", os_error_text(err))
        return 2
    except KeyboardInterrupt:
        logger.warning("interrupted twice: requests in flight abandoned, outputs not exported")
        return 130
    finally:
        if lock is not None:
            lock.release()
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)
        logger.propagate = True  # hand the logger back as found (main() may run inside another program)
        logger.setLevel(logging.NOTSET)
