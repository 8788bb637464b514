"""Continuous batching: requests join the running batch at the next decoding step and leave it
when their answer is done; their tokens stream out as they are decided.

``DecodingLoop.step()`` runs one step for every running request: it feeds each row the token
chosen last time, starts the requests that arrived since (their images, Q-Former and prompt in
one batched pass), lets each request pick its next tokens from its own rows' logits
(:mod:`~lavis.apps.inference.search`: greedy, sampling or beam search, each as ``generate`` would),
sends the text each request has settled (a closed question's answer is sent whole when done, once
its verdict agrees with its yes/no confidence), and finishes the requests that are done (answer text,
token counts, yes/no probabilities, exactly as :meth:`Answerer.answer` makes them). A short
question that joins next to long answers leaves as soon as it is answered.

``stream_interval`` (seconds): the running requests' settled text is sent at most that often, all
of it at the same step (a request's first piece at once, its last with its answer). Every piece
sent costs the server's event loop a chunk to write and its client one to read, on the
interpreter the decoding steps also need: at the demo's size, where a step takes milliseconds,
sending every token costs continuous batching throughput (measured in docs/serving.md).
Sending everyone's text at one step wakes the event loop once per interval rather than at every
step. 0 sends each token as it is decided.

Padding never reaches an answer (see :mod:`lavis.models.llm.incremental`), so an answer does not
depend on what it was decoded next to. A seeded sampling request draws from its own generator, so
it can share the batch and still get the samples it gets alone.

``submit`` and ``cancel`` may be called from any thread; ``step`` runs on one thread.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lavis.apps.inference.answerer import Answer, Answerer, Query
from lavis.apps.inference.search import BeamSearch, Search, TokenSearch
from lavis.models.llm.incremental import (
    DecoderRows,
    concat_rows,
    incremental_decoder,
    logits_processors,
    select_rows,
    stack_encoded,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Event:
    """What a request hears: ``text`` (new settled text per answer), then ``answer`` or ``error``."""

    kind: str  # "text" | "answer" | "error"
    text: list[str] | None = None
    answer: Answer | None = None
    error: BaseException | None = None
    batch: int = 0  # the most requests it was decoded with in one step


class TextStream:
    """The text of a growing token sequence as deltas: what is new since the last call, never
    taking back what was sent (a character still being spelt by byte tokens waits)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.sent = ""
        self.seen: list[int] = []

    def delta(self, tokens: Sequence[int]) -> str:
        if len(tokens) == len(self.seen) and list(tokens) == self.seen:
            return ""  # nothing new (a beam search whose settled prefix did not grow)
        self.seen = list(tokens)
        text = self.tokenizer.decode(list(tokens), skip_special_tokens=True).strip().rstrip("\ufffd")
        if len(text) <= len(self.sent) or not text.startswith(self.sent):
            return ""
        new, self.sent = text[len(self.sent):], text
        return new


@dataclasses.dataclass(eq=False)
class LoopRequest:
    query: Query
    notify: Callable[[Event], None]
    search: Search | None = None
    streams: list[TextStream] = dataclasses.field(default_factory=list)
    prefix: torch.Tensor | None = None  # its query outputs (1, queries, width): the yes/no confidence reuses them
    encoded: tuple[torch.Tensor, torch.Tensor] | None = None  # T5: its encoder output and mask, reused likewise
    cancelled: bool = False
    batch: int = 0
    sent_any: bool = False  # whether some of its text was sent (the first piece goes out at once)


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)  # (a copy less on most steps)


def _offsets(sizes: Sequence[int]) -> list[int]:
    """Where each of consecutive blocks of ``sizes`` starts."""
    starts, total = [], 0
    for size in sizes:
        starts.append(total)
        total += size
    return starts


class DecodingLoop:
    """Up to ``max_requests`` requests decoded together, each joining and leaving at any step."""

    def __init__(self, answerer: Answerer, max_requests: int = 16, stream_interval: float = 0.0) -> None:
        if max_requests < 1:
            raise ValueError(f"max_requests must be >= 1, got {max_requests}")
        if stream_interval < 0:
            raise ValueError(f"stream_interval must be >= 0 seconds, got {stream_interval}")
        self.stream_interval = stream_interval
        self._sent_at = float("-inf")  # when the running requests' text was last sent (time.monotonic)
        self.answerer = answerer
        self.model = answerer.model
        self.bridge = self.model.bridge
        self.decoder = incremental_decoder(self.bridge)
        self.max_requests = max_requests
        self._waiting: deque[LoopRequest] = deque()
        self._lock = threading.Lock()
        self.running: list[LoopRequest] = []
        self._rows: DecoderRows | None = None
        self._tokens: torch.Tensor | None = None  # the token each row is fed next
        self.steps = 0

    # ---- any thread ------------------------------------------------------------------------
    def submit(self, query: Query, notify: Callable[[Event], None]) -> LoopRequest:
        request = LoopRequest(query, notify)
        with self._lock:
            self._waiting.append(request)
        return request

    def cancel(self, request: LoopRequest) -> None:
        request.cancelled = True  # it leaves at the next step

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def idle(self) -> bool:
        return not self.running and not self._waiting

    # ---- the loop thread ---------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> int:
        """One decoding step for the running requests and the ones that join now; how many took part."""
        with self.model.autocast(self.answerer.amp_dtype):
            self._drop_cancelled()
            joining, new_rows, first = self._start(self._admit())
            in_step = bool(joining) and first is None  # they join this very step (T5: the start token)
            parts = ([self._rows] if self.running else []) + ([new_rows] if in_step else [])
            tokens = ([self._tokens] if self.running else []) + ([new_rows.pending] if in_step else [])
            rows, logits = None, []
            if parts:
                rows = concat_rows(parts)
                try:
                    logits.append(self.decoder.step(rows, _cat(tokens)))
                except Exception as err:  # noqa: BLE001  (the batch's state is lost: its requests fail, the server goes on)
                    self._fail(self.running + (joining if in_step else []), err)
                    self.running, self._rows, rows, logits = [], None, None, []
                    joining = [] if in_step else joining
            if joining and not in_step:  # decoder-only: the prompt was read, its first logits are here
                rows = new_rows if rows is None else concat_rows([rows, new_rows])
                logits.append(first)
            if rows is None:
                return 0
            self.steps += 1
            size = len(self.running) + len(joining)
            self._advance(rows, _cat(logits), joining)
            return size

    def fail_all(self, err: BaseException) -> None:
        """After an unexpected error of the loop itself: every request fails, the loop starts afresh."""
        with self._lock:
            waiting, self._waiting = list(self._waiting), deque()
        self._fail(self.running + waiting, err)
        self.running, self._rows, self._tokens = [], None, None

    def _admit(self) -> list[LoopRequest]:
        taken = []
        with self._lock:
            while self._waiting and len(self.running) + len(taken) < self.max_requests:
                request = self._waiting.popleft()
                if not request.cancelled:
                    taken.append(request)
        return taken

    def _start(self, requests: list[LoopRequest]) -> tuple[list[LoopRequest], DecoderRows | None, torch.Tensor | None]:
        """Read the new requests' images and prompts in one pass; if that fails, one at a time, so
        that a request that breaks the model fails alone. (requests started, their rows, their first
        logits, or None when their first step is the next shared one)."""
        if not requests:
            return [], None, None
        try:
            rows, logits = self._prefill(requests)
            return requests, rows, logits
        except Exception as err:  # noqa: BLE001
            if len(requests) == 1:
                self._fail(requests, err)
                return [], None, None
            logger.warning("starting %d requests together failed (%s: %s); starting them one at a time",
                           len(requests), type(err).__name__, err)
        started, parts, logits = [], [], []
        for request in requests:
            one, rows, first = self._start([request])
            if one:
                started += one
                parts.append(rows)
                logits.append(first)
        if not started:
            return [], None, None
        rows = concat_rows(parts)
        if logits[0] is None:
            rows.pending = torch.cat([p.pending for p in parts])
            return started, rows, None
        return started, rows, torch.cat(logits)

    def _prefill(self, requests: list[LoopRequest]) -> tuple[DecoderRows, torch.Tensor]:
        queries = [r.query for r in requests]
        samples = self.answerer.samples(queries)
        prompts = self.model.prompts(samples)
        prefix = self.model.prefix(samples, self.model.qformer_prompts(samples))
        rows, logits = self.decoder.start(prefix, prompts)
        for i, request in enumerate(requests):
            request.prefix = prefix[i : i + 1]
            if rows.encoder is not None:
                request.encoded = (rows.encoder[i : i + 1], rows.encoder_mask[i : i + 1])
            request.search = self._search(request.query)
            request.streams = [TextStream(self.bridge.tokenizer) for _ in range(request.query.decoding.n)]
        return rows, logits

    def _search(self, query: Query) -> Search:
        decoding = query.decoding
        options = decoding.options()
        initial, tokenizer = self.decoder.initial_ids, self.bridge.tokenizer
        processors = logits_processors(self.bridge, options, len(initial), min_new_tokens=False)
        min_new, max_new = min(options.min_new_tokens, options.max_new_tokens), options.max_new_tokens
        if options.num_beams > 1:
            penalty = self.bridge.default_length_penalty if options.length_penalty is None else options.length_penalty
            return BeamSearch(options.num_beams, decoding.n, processors, tokenizer.eos_token_id, min_new, max_new,
                              penalty, initial)
        generator = None
        if decoding.sampling and decoding.seed is not None:
            generator = torch.Generator(device=self.model.device).manual_seed(decoding.seed)
        return TokenSearch(decoding.n, processors, tokenizer.eos_token_id, tokenizer.pad_token_id, min_new, max_new,
                           initial, decoding.sampling, generator)

    def _advance(self, rows: DecoderRows, logits: torch.Tensor, joining: list[LoopRequest]) -> None:
        """Each request picks its tokens; the rows of the requests that go on are kept, in order."""
        everyone = self.running + joining
        # a joining request has one prefilled row; its search sees ``width`` alike rows, as generate's
        firsts = [0 if number < len(self.running) else r.search.width for number, r in enumerate(everyone)]
        owned = [r.search.width if first == 0 else 1 for r, first in zip(everyone, firsts)]
        spread = [row for start, n, first in zip(_offsets(owned), owned, firsts)
                  for row in (range(start, start + n) if first == 0 else [start] * first)]
        if len(spread) != len(logits):
            logits = logits.index_select(0, torch.tensor(spread, device=logits.device))
        logits, log_probs, best = self._ban_early_eos(logits, everyone)
        index, tokens, going_on, finished = [], [], [], []
        now = time.monotonic()
        send_all = now - self._sent_at >= self.stream_interval
        self._sent_at = now if send_all else self._sent_at
        block = 0  # where a request's rows start in ``logits``
        for request, start, first in zip(everyone, _offsets(owned), firsts):
            search = request.search
            width = search.width
            if search.reads_logits:
                parents, chosen = search.advance(logits[block : block + width], log_probs[block : block + width],
                                                 best[block : block + width])
            else:  # (two tensor slices less per request and step)
                parents, chosen = search.advance(None, None, best[block : block + width])
            block += width
            request.batch = max(request.batch, len(everyone))
            if search.done:
                finished.append(request)
                continue
            index += [start + (p if first == 0 else 0) for p in parents]  # rows in ``rows``
            tokens += chosen
            going_on.append(request)
            if send_all or not request.sent_any:
                self._send_text(request)
        reorder_only = not joining and not finished  # every row replaced by a row of its own request
        if index and not (reorder_only and index == list(range(len(rows)))):
            keep = torch.tensor(index, dtype=torch.long, device=rows.mask.device)
            rows = select_rows(rows, keep, cross_too=not reorder_only)
        self.running, self._rows = going_on, (rows if going_on else None)
        self._tokens = torch.tensor(tokens, dtype=torch.long, device=rows.mask.device) if going_on else None
        self._finish(finished)

    def _ban_early_eos(self, logits: torch.Tensor,
                       requests: list[LoopRequest]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """For every row at once: the log-softmax of its logits (beam search scores log-probabilities
        before EOS is banned, as ``generate`` does), then EOS made impossible in both for the rows of
        requests still short of ``min_new_tokens``, and each row's most likely token (what a greedy
        request takes)."""
        banned, row = [], 0
        for request in requests:
            if request.search.bans_eos():
                banned += range(row, row + request.search.width)
            row += request.search.width
        beams = any(isinstance(r.search, BeamSearch) for r in requests)
        log_probs = torch.log_softmax(logits, dim=-1) if beams else logits  # only beam search scores them
        if banned:  # in place: these logits are this step's own
            rows, eos = torch.tensor(banned, device=logits.device), self.bridge.tokenizer.eos_token_id
            logits[rows, eos] = float("-inf")
            if beams:
                log_probs[rows, eos] = float("-inf")
        return logits, log_probs, logits.argmax(dim=-1).tolist()

    def _send_text(self, request: LoopRequest) -> None:
        if request.query.closed:  # its verdict is settled against the yes/no confidence at the end
            return
        deltas = [stream.delta(tokens) for stream, tokens in zip(request.streams, request.search.settled())]
        if any(deltas):
            request.sent_any = True
            request.notify(Event("text", text=deltas))

    def _finish(self, requests: list[LoopRequest]) -> None:
        """Answers for the finished requests (grouped by their number of answers)."""
        by_n: dict[int, list[LoopRequest]] = {}
        for request in requests:
            by_n.setdefault(request.query.decoding.n, []).append(request)
        for group in by_n.values():
            try:
                ids = self._padded([tokens for r in group for tokens in r.search.results()])
                encoded = None if group[0].encoded is None else stack_encoded([r.encoded for r in group])
                answers = self.answerer.answers_from_ids([r.query for r in group], ids,
                                                         prefix=torch.cat([r.prefix for r in group]), encoded=encoded)
            except Exception as err:  # noqa: BLE001
                self._fail(group, err)
                continue
            for request, answer in zip(group, answers):
                if request.query.closed:  # sent whole, once the verdict agrees with the confidence
                    deltas = [choice.text for choice in answer.choices]
                else:
                    deltas = [stream.delta(tokens) for stream, tokens in zip(request.streams, request.search.results())]
                if any(deltas):
                    request.notify(Event("text", text=deltas))
                request.notify(Event("answer", answer=answer, batch=request.batch))

    def _padded(self, rows: list[list[int]]) -> torch.Tensor:
        """Token rows laid out as ``generate`` returns them: initial ids first, padded on the right."""
        initial, pad = self.decoder.initial_ids, self.bridge.tokenizer.pad_token_id
        width = len(initial) + max(len(r) for r in rows)
        return torch.tensor([[*initial, *r] + [pad] * (width - len(initial) - len(r)) for r in rows], dtype=torch.long)

    def _drop_cancelled(self) -> None:
        if not any(r.cancelled for r in self.running):
            return
        index, going_on, row = [], [], 0
        for request in self.running:
            if not request.cancelled:
                index += range(row, row + request.search.width)
                going_on.append(request)
            row += request.search.width
        if going_on:
            keep = torch.tensor(index, dtype=torch.long, device=self._rows.mask.device)
            self._rows, self._tokens = select_rows(self._rows, keep), self._tokens[keep]
        else:
            self._rows, self._tokens = None, None
        self.running = going_on

    def _fail(self, requests: Sequence[LoopRequest], err: BaseException) -> None:
        if not requests:
            return
        logger.error("generation failed for %d request(s): %s: %s", len(requests), type(err).__name__, err,
                     exc_info=err)
        for request in requests:
            request.notify(Event("error", error=err))
