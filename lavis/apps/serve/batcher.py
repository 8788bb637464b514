"""Dynamic batching: concurrent requests share one ``generate`` call.

Requests wait in one queue. The batcher takes the oldest request and every queued request whose
decoding settings are compatible with it (``Decoding.group_key``), up to ``max_batch``, waiting
at most ``max_wait_ms`` after the oldest arrived for more to come (not at all for a request that
arrived more than ``max_wait_ms`` after the one before it: nothing suggests company is coming);
then runs them on the one generation thread. While a batch runs, new requests queue, so under load batches fill without
waiting. Deterministic settings give the same answers as one at a time (see lavis.apps.inference).

If a batch fails, each of its requests is retried alone, so one request that breaks generation
fails only itself (HTTP 500), and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from lavis.apps.inference import Answer, Query
from lavis.apps.inference.decoding_loop import Event

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """More requests are waiting than ``max_queue``."""


class GenerationFailed(Exception):
    """The model raised while answering this request."""


@dataclasses.dataclass
class _Job:
    query: Query
    key: Any
    future: asyncio.Future
    arrived: float
    previous: float  # when the request before it arrived


@dataclasses.dataclass
class BatchStats:
    """What the batcher did, for /health and tests: how many batches of each size ran."""

    batches: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    requests: int = 0
    failed: int = 0
    idle_s: float = 0.0  # time the generation thread had nothing to run (waiting for requests or for company)
    idle_since: float | None = None  # when its current wait began

    def idle(self, waiting: bool) -> None:
        """The generation thread starts (``True``) or stops waiting."""
        now = time.monotonic()
        if not waiting and self.idle_since is not None:
            self.idle_s += now - self.idle_since
        self.idle_since = now if waiting else None

    def as_dict(self) -> dict[str, Any]:
        since = self.idle_since
        idle = self.idle_s + (time.monotonic() - since if since is not None else 0.0)  # the current wait too
        return {"requests": self.requests, "failed": self.failed, "batches": sum(self.batches.values()),
                "batch_sizes": {str(k): v for k, v in sorted(self.batches.items())},
                "generation_idle_s": round(idle, 3)}


class DynamicBatcher:
    """``await batcher.submit(query)`` -> (answer, size of the batch it ran in). Batches form in
    waves: a batch runs until its longest answer is done (``--batching wave``, the baseline of
    continuous batching in :mod:`lavis.apps.serve.continuous`)."""

    mode = "wave"

    def __init__(self, answer: Callable[[Sequence[Query]], list[Answer]], max_batch: int = 16,
                 max_wait_ms: float = 20.0, max_queue: int = 256) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._answer = answer
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._pending: list[_Job] = []
        self._last_arrival = float("-inf")
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        # one thread runs the model: batches run one after the other, the event loop stays free
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="generate")

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(GenerationFailed("the server is shutting down"))
        self._thread.shutdown(wait=True)

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def submit(self, query: Query) -> tuple[Answer, int]:
        if self._wakeup is None:
            raise RuntimeError("DynamicBatcher.start() was not called")
        if len(self._pending) >= self.max_queue:
            raise QueueFull(f"{len(self._pending)} requests are already waiting (--max-queue {self.max_queue})")
        now = time.monotonic()
        job = _Job(query, query.decoding.group_key(), asyncio.get_running_loop().create_future(), now, self._last_arrival)
        self._last_arrival = now
        self._pending.append(job)
        self._wakeup.set()
        return await job.future

    async def stream(self, query: Query) -> AsyncIterator[Event]:
        """The answer as one event when its batch is done (nothing is decided token by token here)."""
        answer, batch = await self.submit(query)
        yield Event("answer", answer=answer, batch=batch)

    # ---- the loop ------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            self.stats.idle(True)
            batch = await self._collect()
            self.stats.idle(False)
            if batch:
                await self._run(batch)

    async def _collect(self) -> list[_Job]:
        """The next batch: the oldest job and the compatible ones behind it."""
        assert self._wakeup is not None
        while True:
            self._pending = [job for job in self._pending if not job.future.done()]  # clients that left
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            first = self._pending[0]
            if first.key is None:
                group = [first]
            else:
                group = [job for job in self._pending if job.key == first.key][: self.max_batch]
            remaining = first.arrived + self.max_wait - time.monotonic()
            # a request that came long after the one before it has no company on the way: a lone
            # client does not pay the wait
            alone = len(group) == 1 and first.arrived - first.previous > self.max_wait
            if len(group) >= self.max_batch or first.key is None or remaining <= 0 or alone:
                taken = {id(job) for job in group}
                self._pending = [job for job in self._pending if id(job) not in taken]
                return group
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)
            except TimeoutError:
                pass

    async def _run(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        queries = [job.query for job in batch]
        try:
            answers = await loop.run_in_executor(self._thread, self._answer, queries)
        except Exception as err:  # noqa: BLE001  (any failure of the model fails the request, not the server)
            if len(batch) == 1:
                self._fail(batch[0], err)
                return
            logger.warning("a batch of %d failed (%s: %s); retrying its requests one at a time",
                           len(batch), type(err).__name__, err)
            for job in batch:
                await self._run([job])
            return
        self.stats.batches[len(batch)] += 1
        self.stats.requests += len(batch)
        for job, answer in zip(batch, answers):
            if not job.future.done():
                job.future.set_result((answer, len(batch)))

    def _fail(self, job: _Job, err: Exception) -> None:
        self.stats.failed += 1
        logger.error("generation failed: %s: %s", type(err).__name__, err, exc_info=err)
        if not job.future.done():
            job.future.set_exception(GenerationFailed(f"{type(err).__name__}: {err}"))
