"""The page in a real headless Chromium (Debian's, through playwright): the slide viewer (pan, zoom,
a region drawn and asked about, an overlay), answers streamed in token by token, stop, copy,
regenerate, the hints for an empty question and a non-image, and the phone layout.

Never skips: without Chromium it fails with the command that installs it."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

LONGEST = 64  # the server's max_tokens; every answer is as long as the page asks (min = max)


@pytest.fixture(scope="module")
def site(make_server, slide_folder):
    from lavis.apps.inference import Decoding
    from lavis.apps.serve.slide_library import SlideLibrary
    from lavis.apps.serve.wire import Limits

    folder, results, _ = slide_folder
    defaults = Decoding(max_new_tokens=LONGEST, min_new_tokens=LONGEST, num_beams=1)  # greedy: streams token by token
    with make_server(slides=SlideLibrary(folder, [results]), defaults=defaults, stream_interval_ms=0,
                     limits=Limits(max_new_tokens=LONGEST)) as running:  # every token sent: the page shows each
        yield running


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    from lavis.apps.serve.screenshot import CHROMIUM_FLAGS, BrowserMissing, find_chromium

    try:
        executable = find_chromium()
    except BrowserMissing as err:
        pytest.fail(str(err))
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def open_page(browser, url: str, **context):
    ctx = browser.new_context(**context)
    page = ctx.new_page()
    outside, posts = [], []
    page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else outside.append(r.url))
    page.on("request", lambda r: posts.append(r.post_data) if r.method == "POST" else None)
    page.goto(url, timeout=60_000)
    page.wait_for_selector("#status:text('ready')", timeout=60_000)
    set_max_tokens(page, 8)
    return page, outside, posts


def set_max_tokens(page, value: int) -> None:
    page.evaluate(f"document.getElementById('max_tokens').value = '{value}'")  # in the closed settings panel


def api_answer(url: str, image_url: str, question: str, max_tokens: int = 8) -> str:
    content = [{"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": image_url}}]
    body = {"model": "tiny-clover", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
    request = urllib.request.Request(f"{url}/v1/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["choices"][0]["message"]["content"]


def last_answer(page) -> str:
    done = page.locator(".answer:not(.pending)").last
    done.wait_for(timeout=60_000)
    assert "error" not in (done.get_attribute("class") or ""), done.inner_text()
    return done.locator(".text").inner_text().strip()


def test_the_slide_viewer_pans_zooms_asks_about_a_region_and_shows_an_overlay(browser, site):
    url, _ = site
    page, outside, posts = open_page(browser, url, viewport={"width": 1180, "height": 900})
    tiles = []
    page.on("request", lambda r: tiles.append(r.url) if "_files/" in r.url else None)
    page.click("#tab-slides")
    page.select_option("#slide-select", "sub/synthetic.tif")
    page.wait_for_function("window.viewer.source && window.viewer.source.width === 1536 && window.viewer.tilesDrawn > 0")
    box = page.locator("#viewer").bounding_box()
    middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    before = page.evaluate("({...window.viewer.view})")
    page.mouse.move(*middle)
    page.mouse.down()
    page.mouse.move(middle[0] + 120, middle[1] + 60, steps=6)
    page.mouse.up()
    panned = page.evaluate("({...window.viewer.view})")
    assert panned["cx"] == pytest.approx(before["cx"] - 120 / before["scale"], abs=1)
    assert panned["cy"] == pytest.approx(before["cy"] - 60 / before["scale"], abs=1)

    level = page.evaluate("window.viewer.level")
    page.mouse.wheel(0, -700)  # zoom in about the cursor
    page.wait_for_function(f"window.viewer.view.scale > {4 * before['scale']} && window.viewer.level > {level}")
    deeper = page.evaluate("window.viewer.level")
    page.wait_for_function("window.viewer.tilesDrawn > 0")
    assert any(f"_files/{deeper}/" in t for t in tiles), "tiles of the deeper level were fetched"

    page.click("#zoom-fit")
    page.click("#draw-region")
    page.mouse.move(middle[0] - 60, middle[1] - 40)
    page.mouse.down()
    page.mouse.move(middle[0] + 40, middle[1] + 60, steps=5)
    page.mouse.up()
    region = page.evaluate("window.viewer.regions[0]")
    assert region["w"] == region["h"] > 0  # a square, as the model sees it
    page.fill("#question", "describe the image in detail")
    page.click("#ask")
    shown = last_answer(page)
    image_url = f"slide://sub/synthetic.tif?x={region['x']}&y={region['y']}&w={region['w']}&h={region['h']}"
    assert any(p and image_url in p for p in posts), "the page asked about the region it outlined"
    assert shown == api_answer(url, image_url, "describe the image in detail")
    assert page.evaluate("window.viewer.regions[0].answer")  # its answer is drawn beside it

    page.locator(".overlay-toggle").first.check()
    page.wait_for_function("window.viewer.overlays[0].features.length > 0 && window.viewer.overlays[0].visible")
    page.locator(".overlay-opacity").first.fill("1")
    page.wait_for_timeout(200)  # one animation frame
    feature = page.evaluate("""() => { const f = window.viewer.overlays[0].features[0];
        const [x, y] = window.viewer.toScreen((f.x0 + f.x1) / 2, (f.y0 + f.y1) / 2);
        const p = window.viewer.ctx.getImageData(Math.round(x), Math.round(y), 1, 1).data;
        return {color: f.color, pixel: [p[0], p[1], p[2]]}; }""")
    colour = [int(v) for v in feature["color"][4:-1].split(",")]
    assert feature["pixel"] == pytest.approx(colour, abs=2), "the tile is drawn in its score's colour"
    page.locator(".overlay-toggle").first.uncheck()
    page.wait_for_timeout(200)
    hidden = page.evaluate("""() => { const f = window.viewer.overlays[0].features[0];
        const [x, y] = window.viewer.toScreen((f.x0 + f.x1) / 2, (f.y0 + f.y1) / 2);
        return Array.from(window.viewer.ctx.getImageData(Math.round(x), Math.round(y), 1, 1).data.slice(0, 3)); }""")
    assert hidden != feature["pixel"]
    assert not outside, f"the page loaded something from elsewhere: {outside[:3]}"


def test_answers_stream_in_and_can_be_stopped_copied_and_regenerated(browser, site, tiles, data_url, tmp_path):
    url, service = site
    page, outside, posts = open_page(browser, url, viewport={"width": 1180, "height": 900},
                                     permissions=["clipboard-read", "clipboard-write"])
    page.click("#ask")  # no question, no image: a hint, no request
    assert "Type a question" in page.inner_text("#ask-hint") and not posts
    text_file = tmp_path / "notes.png"
    text_file.write_text("this is not a picture")
    page.set_input_files("#file", str(text_file))
    page.wait_for_function("document.getElementById('ask-hint').textContent.includes('not a picture')")
    assert page.locator("#preview").count() == 0  # refused when chosen, no broken preview

    page.set_input_files("#file", str(tiles[0]))
    page.wait_for_selector("#preview", state="attached")
    page.evaluate("""() => { window.seen = new Set(); new MutationObserver(() => {
        const t = document.querySelector('.answer .text'); if (t) window.seen.add(t.textContent); })
        .observe(document.getElementById('transcript'), {subtree: true, childList: true, characterData: true}); }""")
    page.fill("#question", "describe the image in detail")
    page.click("#ask")
    shown = last_answer(page)
    assert shown == api_answer(url, data_url(tiles[0]), "describe the image in detail")
    pieces = int(page.locator(".answer").last.get_attribute("data-pieces"))
    assert pieces >= 3, "the answer came in pieces (8 greedy tokens), each shown as it came"
    partial = [t for t in page.evaluate("Array.from(window.seen)") if t and t != shown]
    assert all(shown.startswith(t.strip()) for t in partial), "what was shown while streaming is the answer's start"

    page.locator(".answer .copy").last.click()
    page.wait_for_function("document.querySelector('.answer .copy').textContent === 'copied'")
    assert page.evaluate("navigator.clipboard.readText()") == shown
    page.locator(".answer .regenerate").last.click()
    page.wait_for_function("document.querySelectorAll('.answer').length === 1 && "
                           "!document.querySelector('.answer').classList.contains('pending')")
    assert last_answer(page) == shown  # temperature 0: the same answer again, in place of the first

    decoder = service.batcher.loop.decoder
    step = decoder.step

    def slow_step(rows, tokens):  # a slower model: a 64-token answer takes seconds, time to press stop
        time.sleep(0.05)
        return step(rows, tokens)

    decoder.step = slow_step
    try:
        set_max_tokens(page, LONGEST)
        page.fill("#question", "what type of cells are seen")
        page.click("#ask")
        page.wait_for_function("(document.querySelector('.answer.pending .text') || {}).textContent")
        page.click("#stop")
        page.wait_for_function("document.querySelector('.answer:last-child .meta') && "
                               "document.querySelector('.answer:last-child .meta').textContent.includes('stopped')")
        deadline = time.monotonic() + 10
        while service.batcher.loop.running and time.monotonic() < deadline:  # the server dropped it too
            time.sleep(0.05)
    finally:
        decoder.step = step
    assert not service.batcher.loop.running
    assert not outside


def test_on_a_phone_the_conversation_comes_first_and_the_question_box_is_pinned(browser, site):
    url, _ = site
    page, _, _ = open_page(browser, url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    chat, media = page.locator(".chat").bounding_box(), page.locator(".media").bounding_box()
    assert chat["y"] < media["y"]
    for scroll in (0, 5000):
        page.evaluate(f"window.scrollTo(0, {scroll})")
        form = page.locator("#ask-form").bounding_box()
        assert form["y"] + form["height"] == pytest.approx(844, abs=1) and form["width"] == pytest.approx(390, abs=1)
    with urllib.request.urlopen(f"{url}/favicon.ico", timeout=30) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("image/svg+xml")
