"""The web page, driven in a real headless Chromium (Debian's package, through playwright): pick an
example tile, ask, the answer appears (the same one the API gives), ask a follow-up, screenshot.

This test never skips: without Chromium it fails with the command that installs it
(`make test` and .ci/run install it when they can)."""

from __future__ import annotations

import pytest


def test_page_answers_about_an_example_tile_and_keeps_the_conversation(server, answerer, decoding, tmp_path):
    from PIL import Image

    from lavis.apps.serve.screenshot import BrowserMissing, capture, find_chromium
    from lavis.common.conversation import Turn

    try:
        find_chromium()
    except BrowserMissing as err:
        pytest.fail(str(err))
    url, service = server
    example = service.settings.examples[0]  # the run's own QUILT-VQA tiles, found from its config
    assert example.question and len(service.settings.examples) == 8
    follow_up = "which stain is used"
    out = tmp_path / "chat_page.png"
    shown = capture(url, out, example=0, questions=[None, follow_up])

    image = Image.open(example.path).convert("RGB")
    first = answerer.answer([answerer.query(image, example.question, decoding=decoding)])[0].choices[0].text
    second = answerer.answer([answerer.query(image, follow_up, [Turn(example.question, first)], decoding)])[0]
    assert shown == [first, second.choices[0].text]
    with Image.open(out) as picture:
        assert picture.size == (1180, 900)
        assert len(set(picture.convert("L").resize((64, 64)).get_flattened_data())) > 20  # not a blank page
