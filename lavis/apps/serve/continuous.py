"""Continuous batching for the server: the :class:`~lavis.apps.inference.decoding_loop.DecodingLoop`
on one generation thread, and an asyncio face for the request handlers.

A request joins the running batch at the next decoding step (there is no batching wait: the
step it joins is the next one anyway) and leaves when its answer is done; ``stream`` yields its
text as the loop settles it, then its answer. A client that goes away (a closed stream, the
page's stop button) is dropped from the batch at the next step.

With nothing running there is no step to join: requests that arrive together then start together,
as a wave batch forms (the oldest waits at most ``max_wait_ms`` for the others, and the burst ends
when it pauses; a request that came long after the one before it starts at once). Rows that start
together read their images in one pass, far cheaper per request than a pass each (the image
encoder and Q-Former read all their weights for one image as for eight), and under steady load
they keep finishing and restarting together.

The events of one step reach the event loop in one call: a wake-up per request and token (a
write to the loop's self-pipe each time) took about 6% of the generation thread in a profile of
the streamed mix (benchmarks/serve_mixed.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator

from lavis.apps.inference import Answer, Answerer, Query
from lavis.apps.inference.decoding_loop import DecodingLoop, Event
from lavis.apps.serve.batcher import BatchStats, GenerationFailed, QueueFull

logger = logging.getLogger(__name__)


class ContinuousBatcher:
    """``async for event in batcher.stream(query)``; ``await batcher.submit(query)`` -> (answer, batch size)."""

    mode = "continuous"

    def __init__(self, answerer: Answerer, max_batch: int = 16, max_queue: int = 256, max_wait_ms: float = 20.0,
                 stream_interval_ms: float = 20.0) -> None:
        self.loop = DecodingLoop(answerer, max_batch, stream_interval_ms / 1000.0)
        self.max_queue = max_queue
        self.max_wait = max_wait_ms / 1000.0
        self._arrivals: deque[float] = deque(maxlen=2)  # the last two arrivals (time.monotonic)
        self._idle_since_arrival = 0.0  # when the first request after an idle spell arrived
        self.stats = BatchStats()  # here a "batch" is one decoding step, its size the requests in it
        self._wake = threading.Event()
        self._outbox: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event], Event]] = []  # this step's events
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="generate", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
        self.loop.fail_all(GenerationFailed("the server is shutting down"))
        self._deliver()

    @property
    def queued(self) -> int:
        return self.loop.waiting

    async def stream(self, query: Query) -> AsyncIterator[Event]:
        """The request's events: ``text`` pieces as they are decided, then its ``answer``."""
        if self._thread is None:
            raise RuntimeError("ContinuousBatcher.start() was not called")
        if self.loop.waiting >= self.max_queue:
            raise QueueFull(f"{self.loop.waiting} requests are already waiting (--max-queue {self.max_queue})")
        events: asyncio.Queue[Event] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def notify(event: Event) -> None:  # on the generation thread, delivered after its step
            self._outbox.append((loop, events, event))

        now = time.monotonic()
        if self.loop.idle:
            self._idle_since_arrival = now
        self._arrivals.append(now)
        request = self.loop.submit(query, notify)
        self._wake.set()
        finished = False
        try:
            while True:
                event = await events.get()
                if event.kind == "error":
                    finished = True
                    self.stats.failed += 1
                    raise GenerationFailed(f"{type(event.error).__name__}: {event.error}")
                if event.kind == "answer":
                    finished = True
                    self.stats.requests += 1
                yield event
                if finished:
                    return
        finally:
            if not finished:
                self.loop.cancel(request)  # the client went away: its rows leave at the next step

    async def submit(self, query: Query) -> tuple[Answer, int]:
        async for event in self.stream(query):
            if event.kind == "answer":
                return event.answer, event.batch
        raise GenerationFailed("the request ended without an answer")

    def _run(self) -> None:
        while not self._stopping:
            hold = self._hold_for_company()
            if self.loop.idle or hold > 0:
                self.stats.idle(True)
                self._wake.wait(hold or None)
                self.stats.idle(False)
                self._wake.clear()
                continue
            try:
                size = self.loop.step()
            except Exception as err:  # noqa: BLE001  (a bug in the loop fails its requests, not the server)
                logger.error("the decoding loop failed: %s: %s", type(err).__name__, err, exc_info=err)
                self.loop.fail_all(err)
                size = 0
            self._deliver()
            if size:
                self.stats.batches[size] += 1

    def _hold_for_company(self) -> float:
        """Seconds an idle loop waits before its first step, for the requests arriving with the first."""
        if self.loop.running or not self.loop.waiting or self.loop.waiting >= self.loop.max_requests:
            return 0.0
        return hold_for_company(time.monotonic(), list(self._arrivals), self._idle_since_arrival, self.max_wait)

    def _deliver(self) -> None:
        """Hand the events gathered so far to their requests: one call per event loop."""
        events, self._outbox = self._outbox, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Event], Event]]] = {}
        for loop, queue, event in events:
            by_loop.setdefault(loop, []).append((queue, event))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:  # the event loop has closed (shutdown)
                pass


def hold_for_company(now: float, arrivals: list[float], first: float, max_wait: float) -> float:
    """How long an idle loop still waits for company. Not at all when the newest of the last
    ``arrivals`` came more than ``max_wait`` after the one before it: nothing suggests company is
    coming (wave batching's rule, lavis.apps.serve.batcher). Else while requests keep coming: until
    ``max_wait`` after the ``first`` request of the spell, or a quarter of it after the newest,
    whichever is sooner (a burst is over when it pauses)."""
    if len(arrivals) < 2 or arrivals[-1] - arrivals[-2] > max_wait:
        return 0.0
    return max(0.0, min(first + max_wait, arrivals[-1] + max_wait / 4) - now)


def _put_all(items: list[tuple[asyncio.Queue[Event], Event]]) -> None:
    for queue, event in items:
        queue.put_nowait(event)
