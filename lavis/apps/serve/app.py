"""The ASGI app: the chat-completions API, the model list, health, the web page and its examples.

Routes
    GET  /                      the chat page (static/index.html; nothing loaded from elsewhere)
    GET  /health                status, model, uptime and what the batcher did (no key needed)
    GET  /v1/models             the one model served, OpenAI list format
    GET  /v1/models/{id}        that model
    POST /v1/chat/completions   answers (JSON, or server-sent events with "stream": true)
    GET  /examples              example tiles offered by the page (name, question, url)
    GET  /examples/{index}      one example tile's bytes
    GET  /static/{name}         the page's scripts and style; /favicon.ico its icon
    GET  /v1/slides, /slides/...  the slides of --slides DIR (lavis.apps.serve.slide_routes)

With an API key, every route but ``/`` and ``/health`` needs ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from lavis.apps.inference import Answerer, Decoding, InputError, Query
from lavis.apps.inference.images import image_from_bytes
from lavis.apps.serve.batcher import DynamicBatcher, GenerationFailed, QueueFull
from lavis.apps.serve.continuous import ContinuousBatcher
from lavis.apps.serve.errors import APIError
from lavis.apps.serve.examples import Example
from lavis.apps.serve.guard import LOOPBACK_NAMES, RequestGuard
from lavis.apps.serve.json_body import parse_json
from lavis.apps.serve.slide_library import SlideLibrary
from lavis.apps.serve.slide_routes import SlideRoutes, read_region
from lavis.apps.serve.wire import (
    DONE,
    ChatRequest,
    Limits,
    SlideRegion,
    answer_chunks,
    completion,
    content_chunk,
    error_event,
    parse_chat_request,
    role_chunks,
)

logger = logging.getLogger("lavis.apps.serve")
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {p.name for p in STATIC.iterdir() if p.suffix in (".js", ".css", ".svg")}
DRAIN_BYTES = 64 * 1024 * 1024  # past this much over the limit, the connection is dropped


@dataclasses.dataclass
class ServerSettings:
    model_id: str
    defaults: Decoding
    limits: Limits = dataclasses.field(default_factory=Limits)
    max_batch: int = 16
    max_wait_ms: float = 20.0
    stream_interval_ms: float = 20.0  # continuous batching: a request's text is sent at most this often
    max_queue: int = 256
    api_key: str | None = None
    examples: list[Example] = dataclasses.field(default_factory=list)
    batching: str = "continuous"  # or "wave": a batch runs until its longest answer is done
    slides: SlideLibrary | None = None  # --slides DIR
    allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES  # Host names answered (with the bound address); "*": any
    cors_origins: tuple[str, ...] = ()  # origins whose pages may call the API from a browser

    @property
    def max_body_bytes(self) -> int:
        """The image as base64 (4/3 of its bytes) plus room for a long conversation."""
        return int(self.limits.max_image_mb * 1024 * 1024 * 4 / 3) + 1024 * 1024


class ChatService:
    """Request handling around one :class:`Answerer` and its :class:`DynamicBatcher`."""

    def __init__(self, answerer: Answerer, settings: ServerSettings) -> None:
        self.answerer = answerer
        self.settings = settings
        if settings.batching == "continuous":
            self.batcher: ContinuousBatcher | DynamicBatcher = ContinuousBatcher(
                answerer, settings.max_batch, settings.max_queue, settings.max_wait_ms, settings.stream_interval_ms)
        elif settings.batching == "wave":
            self.batcher = DynamicBatcher(answerer.answer, settings.max_batch, settings.max_wait_ms, settings.max_queue)
        else:
            raise ValueError(f"batching must be 'continuous' or 'wave', got {settings.batching!r}")
        self.started = time.time()

    # ---- checks ------------------------------------------------------------------------------
    def authorize(self, request: Request) -> None:
        key = self.settings.api_key
        if key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
            raise APIError(401, "a valid API key is required: send the header 'Authorization: Bearer <key>'",
                           "invalid_api_key")

    async def read_json(self, request: Request) -> Any:
        """The body as JSON. A body over the limit is read to its end without being kept (up to
        ``DRAIN_BYTES``), so that the client gets the 413 instead of a broken connection."""
        limit = self.settings.max_body_bytes
        chunks, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size <= limit:
                chunks.append(part)
            elif size > limit + DRAIN_BYTES:
                break
        if size > limit:
            raise APIError(413, f"the request body is over this server's limit of {limit / 1024 / 1024:.1f} MB "
                                f"(--max-image-mb {self.settings.limits.max_image_mb:g})", "request_too_large")
        return parse_json(b"".join(chunks))

    # ---- routes ------------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def static(self, request: Request) -> Response:
        """The page's scripts, style and icon: only the files in static/ by name."""
        name = request.path_params.get("name", "favicon.svg")
        if name not in STATIC_FILES:
            raise APIError(404, f"no static file '{name[:60]}'", "not_found")
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.settings.model_id,
                             "uptime_s": round(time.time() - self.started, 1), "batching": self.batcher.mode,
                             "queued": self.batcher.queued, **self.batcher.stats.as_dict()})

    def model_card(self) -> dict[str, Any]:
        """The OpenAI model object, plus how the model takes a conversation (its contract)."""
        return {"id": self.settings.model_id, "object": "model", "created": int(self.started), "owned_by": "clover",
                "conversation": self.answerer.conversation.as_dict()}

    async def models(self, request: Request) -> Response:
        self.authorize(request)
        return JSONResponse({"object": "list", "data": [self.model_card()]})

    async def model(self, request: Request) -> Response:
        self.authorize(request)
        if request.path_params["model_id"] != self.settings.model_id:
            raise APIError(404, f"the model '{request.path_params['model_id']}' does not exist here",
                           "model_not_found", "model")
        return JSONResponse(self.model_card())

    async def examples(self, request: Request) -> Response:
        self.authorize(request)
        items = [{"index": i, "name": e.name, "question": e.question, "url": f"/examples/{i}"}
                 for i, e in enumerate(self.settings.examples)]
        return JSONResponse({"data": items, "defaults": self.page_defaults()})

    def page_defaults(self) -> dict[str, Any]:
        d, limits = self.settings.defaults, self.settings.limits
        return {"max_tokens": min(d.max_new_tokens, limits.max_new_tokens), "max_tokens_limit": limits.max_new_tokens,
                "temperature": 0, "top_p": d.top_p, "num_beams": d.num_beams, "max_image_mb": limits.max_image_mb,
                "field_size": self.field_size}

    async def example(self, request: Request) -> Response:
        self.authorize(request)
        index = request.path_params["index"]
        if not 0 <= index < len(self.settings.examples):
            raise APIError(404, f"no example {index}", "not_found")
        return FileResponse(self.settings.examples[index].path)

    async def chat(self, request: Request) -> Response:
        start = time.perf_counter()
        try:
            self.authorize(request)
            parsed = parse_chat_request(await self.read_json(request), self.settings.model_id,
                                        self.settings.defaults, self.settings.limits)
            query = await self.prepare(parsed)
        except APIError as err:
            self.log(err.status, start, detail=err.code)
            return err.response()
        if parsed.stream:
            return StreamingResponse(self.stream(parsed, query, start), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            answer, batch = await self.submit(query)
        except APIError as err:
            self.log(err.status, start, detail=err.code)
            return err.response()
        body = completion(_completion_id(), int(time.time()), self.settings.model_id, answer)
        self.log(200, start, batch, answer.prompt_tokens, answer.completion_tokens, parsed)
        return JSONResponse(body)

    async def prepare(self, parsed: ChatRequest) -> Query:
        """Image decoded and transformed on a worker thread (not the event loop); instruction folded here."""
        limits = self.settings.limits
        try:
            image = await run_in_threadpool(self._image, parsed.image, parsed.image_param, limits)
            return self.answerer.query(image, parsed.question, parsed.history, parsed.decoding)
        except InputError as err:
            raise APIError.from_input(err) from None

    def _image(self, data: bytes | SlideRegion, param: str, limits: Limits):
        if isinstance(data, SlideRegion):
            image = read_region(self.settings.slides, data, self.field_size, limits.max_image_megapixels)
        else:
            image = image_from_bytes(data, limits.max_image_mb, limits.max_image_megapixels, param)
        return self.answerer.image_tensor(image)

    @property
    def field_size(self) -> int:
        """The side of the square the model sees (its eval transform's image size)."""
        cfg = getattr(self.answerer.loaded.vis_processor, "cfg", None)
        return int(getattr(cfg, "image_size", 224))

    async def submit(self, query: Query):
        try:
            return await self.batcher.submit(query)
        except (QueueFull, GenerationFailed) as err:
            raise _api_error(err) from None

    async def stream(self, parsed: ChatRequest, query: Query, start: float) -> AsyncIterator[str]:
        """Server-sent events: the role chunks at once, each choice's text as it is decided, then
        what is left of it, its closing chunk, the usage, ``[DONE]``."""
        completion_id, created, model_id = _completion_id(), int(time.time()), self.settings.model_id
        usage = parsed.include_usage
        yield role_chunks(completion_id, created, model_id, parsed.decoding.n, usage)
        sent = [""] * parsed.decoding.n
        answer = None
        try:
            async for event in self.batcher.stream(query):
                if event.kind == "answer":
                    answer, batch = event.answer, event.batch
                    continue
                pieces = []
                for index, piece in enumerate(event.text or []):
                    if piece:
                        sent[index] += piece
                        pieces.append(content_chunk(completion_id, created, model_id, index, piece, usage))
                if pieces:
                    yield "".join(pieces)  # one write per event: each costs the event loop a trip through the ASGI stack
        except asyncio.CancelledError:  # the client went away; the batcher drops its request
            self.log(499, start, detail="client closed the stream")
            raise
        except (QueueFull, GenerationFailed) as err:
            failure = _api_error(err)
            self.log(failure.status, start, detail=f"{failure.code} (in stream)")
            yield error_event(failure)
            yield DONE
            return
        yield "".join(answer_chunks(completion_id, created, model_id, answer, usage, sent)) + DONE
        self.log(200, start, batch, answer.prompt_tokens, answer.completion_tokens, parsed)

    def log(self, status: int, start: float, batch: int = 0, prompt_tokens: int = 0, completion_tokens: int = 0,
            parsed: ChatRequest | None = None, detail: str = "") -> None:
        """One line per request: status, latency, batch size and tokens (never images or keys)."""
        ms = (time.perf_counter() - start) * 1000
        if status == 200 and parsed is not None:
            logger.info("chat 200 %.0f ms batch=%d prompt_tokens=%d completion_tokens=%d n=%d stream=%s turns=%d",
                        ms, batch, prompt_tokens, completion_tokens, parsed.decoding.n, parsed.stream,
                        len(parsed.history) + 1)
        else:
            logger.info("chat %d %.0f ms error=%s", status, ms, detail)


def _api_error(err: QueueFull | GenerationFailed) -> APIError:
    if isinstance(err, QueueFull):
        return APIError(429, f"the server is busy: {err}; retry shortly", "server_busy")
    return APIError(500, f"generation failed for this request: {err}", "generation_failed")


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def create_app(answerer: Answerer, settings: ServerSettings) -> Starlette:
    service = ChatService(answerer, settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.batcher.start()
        yield
        await service.batcher.stop()

    async def api_error(request: Request, exc: APIError) -> Response:
        return exc.response()

    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return APIError(exc.status_code, message, code).response()

    async def server_error(request: Request, exc: Exception) -> Response:
        logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return APIError(500, f"internal error: {type(exc).__name__}", "internal_error").response()

    routes = [
        Route("/", service.page, methods=["GET"]),
        Route("/static/{name}", service.static, methods=["GET"]),
        Route("/favicon.ico", service.static, methods=["GET"]),
        Route("/health", service.health, methods=["GET"]),
        Route("/v1/models", service.models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", service.model, methods=["GET"]),
        Route("/v1/chat/completions", service.chat, methods=["POST"]),
        Route("/examples", service.examples, methods=["GET"]),
        Route("/examples/{index:int}", service.example, methods=["GET"]),
        *SlideRoutes(settings.slides, service.authorize).routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(RequestGuard, allowed_hosts=settings.allowed_hosts,
                                           cors_origins=settings.cors_origins)],
                    exception_handlers={APIError: api_error, HTTPException: http_error, Exception: server_error})
    app.state.service = service
    return app
