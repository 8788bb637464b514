"""A screenshot of the chat page answering a question about an example tile, taken in a real
headless Chromium (Debian's ``chromium`` package, driven by playwright; nothing downloaded).

    python -m lavis.apps.serve.screenshot --model runs/demo/stage2/checkpoints/last --out docs/images/chat_page.png

It serves the model on a free loopback port in this process, opens the page, picks an example tile
(``--example``, or ``--image FILE``), asks its question (or ``--question``), optionally a follow-up,
waits for the answers and saves the picture. The browser test uses the same code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lavis.common.errors import LavisError

INSTALL = "apt-get install -y chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]


class BrowserMissing(LavisError):
    """No Chromium to drive."""


def find_chromium() -> str:
    """``$CHROMIUM`` or Debian's chromium on PATH; the error says how to install it."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    raise BrowserMissing(f"no Chromium found (the page is tested in a real browser): run `{INSTALL}` "
                         "(as root; Debian/Ubuntu), or set CHROMIUM to a Chromium binary")


def capture(url: str, out: str | os.PathLike | None, example: int = 0, image: str | None = None,
            questions: Sequence[str | None] = (), timeout_s: float = 120.0) -> list[str]:
    """Drive the page at ``url``: choose a tile or an image file, ask ``questions`` (the tile's own
    question when empty), and return the answers shown; save a screenshot to ``out``."""
    from playwright.sync_api import sync_playwright

    timeout = timeout_s * 1000
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 900})
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else outside.append(r.url))
            page.goto(url, timeout=timeout)
            page.wait_for_selector("#status:text('ready')", timeout=timeout)
            if image:
                page.set_input_files("#file", image)
            else:
                tiles = page.locator("#examples .example")
                tiles.first.wait_for(timeout=timeout)
                if example >= tiles.count():
                    raise LavisError(f"--example {example}: the page offers {tiles.count()} example tiles")
                tiles.nth(example).locator("img[src]").wait_for(state="attached", timeout=timeout)
                tiles.nth(example).click()
            page.wait_for_selector("#preview", state="attached", timeout=timeout)
            answers = []
            for number, question in enumerate(questions or [None]):
                if question is not None:
                    page.fill("#question", question)
                elif not page.input_value("#question"):
                    raise LavisError("the example has no question of its own: pass --question")
                page.click("#ask")
                done = page.locator(".answer:not(.pending)")
                done.nth(number).wait_for(timeout=timeout)
                if "error" in (done.nth(number).get_attribute("class") or ""):
                    raise LavisError(f"the page shows an error: {done.nth(number).inner_text()}")
                answers.append(done.nth(number).locator(".text").inner_text().strip())
            if outside:
                raise LavisError(f"the page loaded something from outside the server: {outside[:3]}")
            if out is not None:
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                page.evaluate("window.scrollTo(0, 0)")  # picking a tile scrolls the page on a narrow window
                page.screenshot(path=str(out), full_page=False)
            return answers
        finally:
            browser.close()


def main(argv: Sequence[str] | None = None) -> int:
    from lavis.apps.inference.cli import add_model_arguments

    parser = argparse.ArgumentParser(prog="python -m lavis.apps.serve.screenshot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--out", default="docs/images/chat_page.png")
    parser.add_argument("--examples", default=None, help="as for lavis.apps.serve (default: the run's test tiles)")
    parser.add_argument("--example", type=int, default=0, help="which example tile to pick")
    parser.add_argument("--image", default=None, help="an image file instead of an example tile")
    parser.add_argument("--question", action="append", default=[],
                        help="question(s) to ask in turn (default: the example's own question)")
    args = parser.parse_args(argv)
    try:
        answers = take(args)
    except LavisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for answer in answers:
        print(answer)
    print(f"saved {args.out}")
    return 0


def take(args: Any) -> list[str]:
    from lavis.apps.inference.cli import load_answerer
    from lavis.apps.serve.app import ServerSettings, create_app
    from lavis.apps.serve.background import background_server
    from lavis.apps.serve.examples import find_examples
    from lavis.common.logger import setup_logging

    setup_logging()
    find_chromium()  # fail before loading the model
    answerer, defaults = load_answerer(args, chat=True)
    settings = ServerSettings(answerer.name, defaults, examples=find_examples(answerer.loaded, args.examples))
    if not settings.examples and not args.image:
        raise LavisError("no example tiles for this model: pass --examples FOLDER_OR_QUESTION_FILE or --image FILE")
    with background_server(create_app(answerer, settings)) as url:
        return capture(url, args.out, args.example, args.image, args.question)


if __name__ == "__main__":
    sys.exit(main())
