"""``python -m lavis.serve --model runs/demo/stage2/checkpoints/last``: serve a trained model.

The chat-completions API at /v1 (the official ``openai`` client works unchanged), a web page at
/, continuous batching of concurrent requests with answers streamed token by token. See
docs/serving.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from lavis.common.errors import ConfigError, LavisError

logger = logging.getLogger("lavis.apps.serve")


def build_parser() -> argparse.ArgumentParser:
    from lavis.apps.inference.cli import add_model_arguments
    from lavis.apps.inference.images import DEFAULT_MAX_MB, DEFAULT_MAX_MEGAPIXELS

    parser = argparse.ArgumentParser(prog="python -m lavis.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key-env", default=None, metavar="NAME",
                        help="require 'Authorization: Bearer <key>' with the key read from this environment variable")
    parser.add_argument("--allowed-hosts", nargs="+", default=[], metavar="NAME",
                        help="host names the server answers for besides the bound address, localhost and 127.0.0.1 "
                             "(the name clients use in their URL; '*' for any: not safe from web pages)")
    parser.add_argument("--cors-origins", nargs="+", default=[], metavar="ORIGIN",
                        help="web pages (e.g. https://viewer.example.org) allowed to call the API from a browser; "
                             "default none")
    parser.add_argument("--model-name", default=None, help="the model id clients send (default: the run/step name)")
    parser.add_argument("--batching", choices=["continuous", "wave"], default="continuous",
                        help="continuous: a request joins the running batch at the next decoding step and leaves "
                             "when done, its tokens streamed as they are decided (default); wave: one generate call "
                             "per batch, which runs until its longest answer is done")
    parser.add_argument("--max-batch", type=int, default=16, help="most requests decoded together")
    parser.add_argument("--max-wait-ms", type=float, default=20.0,
                        help="longest a request waits for others to share its batch (wave), or its first step "
                             "when nothing is running (continuous)")
    parser.add_argument("--stream-interval-ms", type=float, default=20.0,
                        help="--batching continuous: a streamed answer's text is sent at most this often (the "
                             "first piece at once); 0 sends every token as it is decided")
    parser.add_argument("--max-queue", type=int, default=256, help="waiting requests beyond this get 429")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="the largest max_tokens a request may ask")
    parser.add_argument("--max-n", type=int, default=8, help="the largest n (answers per request)")
    parser.add_argument("--max-image-mb", type=float, default=DEFAULT_MAX_MB, help="largest image (encoded bytes)")
    parser.add_argument("--max-image-megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS,
                        help="largest image (decoded pixels; refuses decompression bombs)")
    parser.add_argument("--examples", default=None,
                        help="example tiles for the page: a folder of images or a question file "
                             "(default: the run's own QUILT-VQA test tiles, when its data folder has them; 'none')")
    parser.add_argument("--slides", default=None, metavar="DIR",
                        help="whole-slide images to show and ask about (every OpenSlide format and plain images; "
                             "nothing outside DIR is read)")
    parser.add_argument("--slide-results", nargs="+", default=[], metavar="DIR",
                        help="folders holding lavis.slides outputs, shown as overlays on their slides "
                             "(outputs inside --slides are found anyway)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def read_api_key(env_name: str | None) -> str | None:
    if env_name is None:
        return None
    key = os.environ.get(env_name, "")
    if not key.strip():
        raise ConfigError(f"--api-key-env {env_name}: the environment variable {env_name} is not set or empty")
    return key.strip()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lavis.common.logger import setup_logging

    setup_logging(getattr(logging, args.log_level.upper()))
    try:
        if (args.max_batch < 1 or args.max_wait_ms < 0 or args.stream_interval_ms < 0 or args.max_new_tokens < 1
                or args.max_n < 1):
            raise ConfigError("--max-batch, --max-new-tokens and --max-n must be >= 1, --max-wait-ms and "
                              "--stream-interval-ms >= 0")
        if not 1 <= args.port <= 65535:
            raise ConfigError(f"--port must be a TCP port from 1 to 65535, got {args.port}")
        api_key = read_api_key(args.api_key_env)
        if not is_loopback(args.host) and api_key is None:
            logger.warning("binding %s without --api-key-env: anyone who can reach this port can use the model; "
                           "set a key (--api-key-env NAME) or bind 127.0.0.1", args.host)
        if args.host in ("0.0.0.0", "::") and not args.allowed_hosts:
            logger.warning("binding %s: only requests for localhost and 127.0.0.1 are answered; add the names other "
                           "machines use for this one with --allowed-hosts", args.host)
        app, settings = build_app(args, api_key)
    except LavisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import uvicorn

    logger.info("serving '%s' on http://%s:%d (page: /, API: /v1, %s batching of up to %d requests)",
                settings.model_id, args.host, args.port, args.batching, args.max_batch)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                timeout_graceful_shutdown=5)
    return 0


def build_app(args: argparse.Namespace, api_key: str | None) -> tuple[Any, Any]:
    from lavis.apps.inference.cli import load_answerer
    from lavis.apps.serve.app import ServerSettings, create_app
    from lavis.apps.serve.examples import find_examples
    from lavis.apps.serve.guard import allowed_hosts
    from lavis.apps.serve.slide_library import SlideLibrary
    from lavis.apps.serve.wire import Limits

    if args.slide_results and not args.slides:
        raise ConfigError("--slide-results needs --slides DIR (the slides the overlays belong to)")
    library = SlideLibrary(args.slides, args.slide_results) if args.slides else None
    answerer, defaults = load_answerer(args, chat=True)
    settings = ServerSettings(
        model_id=args.model_name or answerer.name,
        defaults=defaults,
        limits=Limits(args.max_new_tokens, args.max_n, args.max_image_mb, args.max_image_megapixels),
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        stream_interval_ms=args.stream_interval_ms,
        max_queue=args.max_queue,
        batching=args.batching,
        allowed_hosts=tuple(allowed_hosts(args.host, args.allowed_hosts)),
        cors_origins=tuple(args.cors_origins),
        api_key=api_key,
        examples=find_examples(answerer.loaded, args.examples),
        slides=library,
    )
    if settings.examples:
        logger.info("the page offers %d example tiles", len(settings.examples))
    if library is not None:
        slides = library.slides()
        logger.info("%d slides under %s (%d with overlays)", len(slides), library.root, sum(bool(s.overlays) for s in slides))
    return create_app(answerer, settings), settings


if __name__ == "__main__":
    sys.exit(main())
