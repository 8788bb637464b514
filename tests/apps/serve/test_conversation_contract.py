"""The conversation contract: a single-turn model answers each question on its own, a model tuned
on conversations gets the earlier turns in its training format, and serving folds exactly as
training does (one fold, ``lavis.common.conversation``)."""

from __future__ import annotations

import logging

import pytest
from PIL import Image

from lavis.common.conversation import Turn


@pytest.fixture(scope="module")
def image(tiles):
    return Image.open(tiles[4]).convert("RGB")


def ask(url: str, messages: list[dict]) -> tuple[str, dict]:
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
    reply = client.chat.completions.create(model="tiny-clover", messages=messages)
    card = client.models.retrieve("tiny-clover").model_dump()
    return reply.choices[0].message.content, card


def follow_up(user, tiles, questions) -> list[dict]:
    return [
        user(questions[2], tiles[0]),
        {"role": "assistant", "content": "lymphocytes"},
        user(questions[0], tiles[4]),  # a newer image: the conversation is about it now
        {"role": "assistant", "content": [{"type": "text", "text": "yes"}]},
        user(questions[1]),
    ]


def test_a_single_turn_model_answers_a_follow_up_as_if_asked_alone(make_server, answerer, decoding, image,
                                                                   user, tiles, questions):
    history = [Turn(questions[2], "lymphocytes"), Turn(questions[0], "yes")]
    query = answerer.query(image, questions[1], history, decoding)
    alone = answerer.query(image, questions[1], [], decoding)
    assert query.instruction == questions[1] and query.turns_kept == 0
    with make_server() as (url, _):
        text, card = ask(url, follow_up(user, tiles, questions))
    assert card["conversation"] == {"mode": "single_turn"}
    assert text == answerer.answer([alone])[0].choices[0].text


def test_a_multi_turn_model_folds_earlier_turns_in_its_training_format(make_server, multi_turn_answerer, decoding,
                                                                       image, user, tiles, questions):
    history = [Turn(questions[2], "lymphocytes"), Turn(questions[0], "yes")]
    query = multi_turn_answerer.query(image, questions[1], history, decoding)
    folded = f"Q: {questions[2]} A: lymphocytes Q: {questions[0]} A: yes Q: {questions[1]}"
    assert query.instruction == folded and query.turns_kept == 2
    # training reads a conversation turn through the same fold: the model's own prompts
    model = multi_turn_answerer.model
    sample = {"image": query.image[None], "text_input": [questions[1]],
              "history": [[{"question": questions[2], "answer": "lymphocytes"}, {"question": questions[0], "answer": "yes"}]]}
    assert model.prompts(sample) == [model.cfg.prompt.format(folded)]
    assert model.qformer_prompts(sample) == [model.cfg.prompt.format(questions[1])]  # the queries read the question
    with make_server(model=multi_turn_answerer) as (url, _):
        text, card = ask(url, follow_up(user, tiles, questions))
    assert card["conversation"] == {"mode": "multi_turn", "history_format": "qa_v1", "max_turns": 3}
    assert text == multi_turn_answerer.answer([query])[0].choices[0].text


def test_long_history_is_dropped_oldest_first(multi_turn_answerer, decoding, image, questions):
    history = [Turn(f"{questions[3]} number {i}", "glands lined by columnar epithelium") for i in range(12)]
    query = multi_turn_answerer.query(image, questions[0], history, decoding)
    assert 0 < query.turns_kept < len(history)
    assert query.instruction.startswith(f"Q: {questions[3]} number {len(history) - query.turns_kept} A:")
    budget = multi_turn_answerer.budget
    assert query.instruction.endswith(f"Q: {questions[0]}") and budget.llm_tokens(query.instruction) <= budget.limit
    longer = multi_turn_answerer.query(image, questions[0], history[: query.turns_kept + 1], decoding)
    assert longer.turns_kept == query.turns_kept  # exactly as many as fit


def test_the_history_override_is_logged_and_folds(tiny_run, decoding, image, questions, caplog):
    from lavis.apps.inference import Answerer
    from lavis.models import load_pretrained

    with caplog.at_level(logging.WARNING):
        forced = Answerer(load_pretrained(tiny_run), history_override="qa_v1")
    assert "--history qa_v1" in caplog.text and "single questions" in caplog.text
    query = forced.query(image, questions[1], [Turn(questions[0], "yes")], decoding)
    assert query.instruction == f"Q: {questions[0]} A: yes Q: {questions[1]}"
    with pytest.raises(Exception, match="not a known format"):
        Answerer(load_pretrained(tiny_run), history_override="chatml")


def test_checkpoints_record_the_contract(multi_turn_answerer, answerer):
    from lavis.common.conversation import contract_of_record
    from lavis.models.provenance import describe_model

    assert contract_of_record(describe_model(multi_turn_answerer.model)).multi_turn
    assert not contract_of_record(describe_model(answerer.model)).multi_turn
    assert not contract_of_record(None).multi_turn  # LAVIS / CLOVER releases carry no record: single-turn


def test_the_yes_no_confidence_always_agrees_with_the_verdict_in_the_answer(answerer, decoding, tiles, questions):
    from lavis.apps.inference.answerer import settle_verdict
    from lavis.models.llm.verdict import verdict

    assert settle_verdict("The tissue is loose: yes.", 0.2) == "The tissue is loose: no."
    assert settle_verdict("No, it is dense.", 0.9) == "Yes, it is dense."
    assert settle_verdict("large", None) == "large"
    asked = ["is there necrosis in this image", "is the tissue dense", "Dense?", "Is it stained with IHC?",
             questions[2]]
    queries = [answerer.query(Image.open(tile).convert("RGB"), q, [], decoding) for tile in tiles for q in asked]
    answers = answerer.answer(queries)
    closed = [(q, a.choices[0]) for q, a in zip(queries, answers) if q.closed]
    assert len(closed) == 4 * len(tiles)  # the short form "Dense?" is a closed question too
    with_verdict = 0
    for _, choice in closed:
        said = verdict(choice.text)
        if said is None:
            assert choice.yes_no is None, f"{choice.text!r} has no verdict but got a yes/no bar"
            continue
        with_verdict += 1
        assert said == ("yes" if choice.yes_no["yes"] >= 0.5 else "no"), (choice.text, choice.yes_no)
    assert with_verdict > 0


def notice_shown(url: str) -> str | None:
    """The page's single-turn notice as a browser shows it (None: hidden)."""
    from playwright.sync_api import sync_playwright

    from lavis.apps.serve.screenshot import CHROMIUM_FLAGS, find_chromium

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(url, timeout=60_000)
            page.wait_for_selector("#status:text('ready')", timeout=60_000)
            notice = page.locator("#turn-notice")
            return notice.inner_text() if notice.is_visible() else None
        finally:
            browser.close()


def test_the_page_says_when_a_model_answers_each_question_alone_and_follows_up_for_one_tuned_on_turns(
        make_server, multi_turn_answerer, decoding, tmp_path):
    from lavis.apps.serve.screenshot import capture

    with make_server() as (url, _):
        assert "answers each question on its own" in (notice_shown(url) or "")
    with make_server(model=multi_turn_answerer) as (url, service):
        assert notice_shown(url) is None
        example = service.settings.examples[0]
        follow_up = "which stain is used"
        shown = capture(url, tmp_path / "page.png", example=0, questions=[None, follow_up])
    image = Image.open(example.path).convert("RGB")
    first = multi_turn_answerer.answer([multi_turn_answerer.query(image, example.question, [], decoding)])[0]
    earlier = [Turn(example.question, first.choices[0].text)]
    second = multi_turn_answerer.answer([multi_turn_answerer.query(image, follow_up, earlier, decoding)])[0]
    assert shown == [first.choices[0].text, second.choices[0].text]
