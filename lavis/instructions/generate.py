"""Generation-based instructions: ask a chat model for question/answer pairs about each caption.

``caption_job`` handles one caption (request, parse with bounded retries, filter) and returns its
raw record. ``run_generation`` feeds captions to ``workers`` threads, writes each finished record
from the main thread only, keeps the running cost, stops cleanly at ``max_cost`` or on Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from lavis.instructions.client import APICallError, ChatClient
from lavis.instructions.filters import PairFilter
from lavis.instructions.parsing import ReplyParseError, parse_reply
from lavis.instructions.pricing import Price
from lavis.instructions.protocol import Protocol
from lavis.instructions.store import RawStore

logger = logging.getLogger("lavis.instructions")

TRUNCATION_GROWTH = 1.5  # a reply cut off by max_tokens is retried with this much more room
FAILURES_BEFORE_GIVING_UP = 5  # captions in a row (at least 2 x workers) that exhaust their retries


@dataclasses.dataclass
class JobSettings:
    model: str
    max_tokens: int
    parse_retries: int = 2  # extra replies requested when a reply cannot be parsed
    price: Price | None = None


class JobError(Exception):
    """A caption produced no paid reply (transient API trouble): it stays pending for the next run."""

    def __init__(self, caption_id: str, error: APICallError) -> None:
        super().__init__(f"caption {caption_id}: {error.reason}")
        self.error = error


def record_cost(record: dict[str, Any], price: Price | None) -> float | None:
    usage = record["usage"]
    return None if price is None else price.cost(usage["prompt_tokens"], usage["completion_tokens"])


def caption_job(
    record: dict[str, Any], protocol: Protocol, pair_filter: PairFilter, client: ChatClient, settings: JobSettings
) -> dict[str, Any]:
    """The raw record of one caption: accepted and rejected pairs, usage summed over every reply."""
    messages = protocol.messages(record["caption"])
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "replies": 0, "http_requests": 0, "estimated": False}
    parse_errors: list[str] = []
    pairs: list[dict[str, str]] | None = None
    error = None
    max_tokens = settings.max_tokens
    for _ in range(settings.parse_retries + 1):
        try:
            reply = client.complete(messages, max_tokens)
        except APICallError as err:
            if usage["replies"] == 0:
                raise JobError(record["caption_id"], err) from None
            usage["http_requests"] += err.attempts
            error = f"api_error: {err.reason}"  # earlier replies were paid for: record them
            break
        usage["prompt_tokens"] += reply.prompt_tokens
        usage["completion_tokens"] += reply.completion_tokens
        usage["replies"] += 1
        usage["http_requests"] += reply.attempts
        usage["estimated"] = usage["estimated"] or not reply.usage_reported
        try:
            pairs = parse_reply(reply.content, reply.finish_reason)
            break
        except ReplyParseError as err:
            parse_errors.append(str(err))
            logger.info("caption %s: reply %d not usable (%s)", record["caption_id"], usage["replies"], err)
            if err.reason == "truncated":
                max_tokens = int(max_tokens * TRUNCATION_GROWTH)
    if pairs is None and error is None:
        error = f"unparseable: no usable reply in {usage['replies']} (last: {parse_errors[-1]})"
    accepted, rejected = pair_filter.apply(pairs or [])
    for pair in rejected:
        logger.info("caption %s: rejected pair (%s): %r", record["caption_id"], pair["reason"], pair["question"])
    raw = {
        "caption_id": record["caption_id"],
        "row": record["row"],
        "image": record["image"],
        "caption": record["caption"],
        "status": "ok" if pairs is not None else "failed",
        "error": error,
        "pairs": accepted,
        "rejected": rejected,
        "parse_errors": parse_errors,
        "usage": usage,
        "model": settings.model,
        "prompt_version": protocol.version,
        "prompt_sha256": protocol.sha256,
    }
    raw["cost_usd"] = record_cost(raw, settings.price)
    return raw


@dataclasses.dataclass
class RunOutcome:
    written: int = 0
    failed: int = 0  # written with status "failed"
    pending_errors: int = 0  # no paid reply; retried by the next run
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # this run
    stopped: str | None = None  # None (all done), "max_cost", "interrupted", "fatal: ..."


class CostBudget:
    """Admits a new caption only while spent + (in flight + 1) x estimate stays within ``max_cost``."""

    def __init__(self, max_cost: float | None, spent: float, estimate: float) -> None:
        self.max_cost, self.spent, self.estimate = max_cost, spent, estimate

    def admits(self, in_flight: int) -> bool:
        return self.max_cost is None or self.spent + (in_flight + 1) * self.estimate <= self.max_cost

    def exhausted(self) -> bool:
        return self.max_cost is not None and self.spent >= self.max_cost


def _worker(jobs: queue.Queue, results: queue.Queue, job: Callable[[dict], dict]) -> None:
    while True:
        record = jobs.get()
        if record is None:
            return
        try:
            results.put(("ok", record, job(record)))
        except JobError as err:
            results.put(("error", record, err))
        except Exception as err:  # a bug: report it in the main thread instead of dying silently
            logger.exception("caption %s: unexpected error", record["caption_id"])
            results.put(("crash", record, err))


def run_generation(
    pending: Iterable[dict[str, Any]],
    store: RawStore,
    job: Callable[[dict[str, Any]], dict[str, Any]],
    workers: int,
    budget: CostBudget,
    total: int,
    progress: bool = True,
    stop: threading.Event | None = None,
) -> RunOutcome:
    """Process ``pending`` captions with ``workers`` threads; the main thread writes every record.

    Setting ``stop`` (the command line's Ctrl-C / SIGTERM handler does) ends the run gracefully:
    nothing new is sent and the requests in flight are finished and written.
    """
    from tqdm import tqdm

    outcome = RunOutcome()
    jobs: queue.Queue = queue.Queue()
    results: queue.Queue = queue.Queue()
    threads = [threading.Thread(target=_worker, args=(jobs, results, job), daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    source = iter(pending)
    upcoming: dict[str, Any] | None = None
    failures_in_a_row, give_up_after = 0, max(FAILURES_BEFORE_GIVING_UP, 2 * workers)
    in_flight, stopping = 0, False
    bar = tqdm(total=total, desc="generate", unit="caption", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        while True:
            if stop is not None and stop.is_set() and outcome.stopped != "interrupted":
                stopping, outcome.stopped = True, "interrupted"
                logger.warning("interrupted: finishing %d requests in flight (interrupt again to abandon them)", in_flight)
            while not stopping and in_flight < workers:
                upcoming = next(source, None) if upcoming is None else upcoming
                if upcoming is None:
                    break
                if not budget.admits(in_flight):
                    stopping, outcome.stopped = True, "max_cost"
                    break
                jobs.put(upcoming)
                upcoming, in_flight = None, in_flight + 1
            if in_flight == 0:
                break
            try:
                kind, record, value = results.get(timeout=0.2)
            except queue.Empty:
                continue
            in_flight -= 1
            if kind == "ok":
                failures_in_a_row = 0
                store.append(value)
                outcome.written += 1
                outcome.failed += value["status"] == "failed"
                outcome.prompt_tokens += value["usage"]["prompt_tokens"]
                outcome.completion_tokens += value["usage"]["completion_tokens"]
                cost = value["cost_usd"] or 0.0
                outcome.cost += cost
                budget.spent += cost
                bar.update(1)
                bar.set_postfix_str(
                    f"cost ${budget.spent:.4f} tok {outcome.prompt_tokens}/{outcome.completion_tokens} failed {outcome.failed}",
                    refresh=False,
                )
                if budget.exhausted() and not stopping:
                    stopping, outcome.stopped = True, "max_cost"
            elif kind == "error":
                outcome.pending_errors += 1
                failures_in_a_row += 1
                logger.warning("%s (left pending for the next run)", value)
                if value.error.fatal and not stopping:
                    stopping, outcome.stopped = True, f"fatal: {value.error.reason}"
                elif failures_in_a_row >= give_up_after and not stopping:  # the endpoint is down: stop
                    stopping = True
                    outcome.stopped = f"fatal: {failures_in_a_row} captions in a row failed, last: {value.error.reason}"
            else:
                outcome.pending_errors += 1
                if not stopping:
                    stopping, outcome.stopped = True, f"fatal: {type(value).__name__}: {value}"
    finally:
        bar.close()
        for _ in threads:
            jobs.put(None)
    return outcome
