"""Reply parsing: JSON, fenced JSON, CLOVER's line format; cut-off and junk replies are refused."""

from __future__ import annotations

import json

import pytest

from lavis.instructions.parsing import ReplyParseError, parse_reply

PAIRS = [
    {"question": "What kind of tissue is shown?", "answer": "Colonic mucosa with crypts."},
    {"question": "How are the glands arranged?", "answer": "They are crowded and back-to-back."},
]


def test_plain_json_object():
    assert parse_reply(json.dumps({"pairs": PAIRS})) == PAIRS


def test_json_in_a_code_fence_with_chatter_around_it():
    reply = "Sure! Here you go:\n```json\n" + json.dumps({"pairs": PAIRS}, indent=2) + "\n```\nLet me know."
    assert parse_reply(reply) == PAIRS


def test_json_after_a_sentence_without_fence_and_a_bare_list():
    assert parse_reply("Here are the pairs: " + json.dumps({"pairs": PAIRS})) == PAIRS
    assert parse_reply(json.dumps(PAIRS)) == PAIRS


def test_json_keys_are_case_insensitive_and_values_trimmed():
    reply = json.dumps({"Pairs": [{"Question": "  What kind of tissue is shown? ", "ANSWER": "Colonic mucosa with crypts."}]})
    assert parse_reply(reply) == PAIRS[:1]


def test_clover_line_format_with_numbering_quotes_and_multiline_answers():
    reply = (
        '1. question: "What kind of tissue is shown?"\n'
        'answer: "Colonic mucosa with crypts."\n\n'
        "2) **Question:** How are the glands arranged?\n"
        "**Answer:** They are crowded\n"
        "and back-to-back.\n"
    )
    assert parse_reply(reply) == PAIRS


def test_line_format_with_question_and_answer_on_one_line():
    reply = 'question: "What kind of tissue is shown?" answer: "Colonic mucosa with crypts."'
    assert parse_reply(reply) == PAIRS[:1]


def test_q_and_a_prefixes():
    reply = "Q: What kind of tissue is shown?\nA: Colonic mucosa with crypts.\nQ: How are the glands arranged?\nA: They are crowded and back-to-back."
    assert parse_reply(reply) == PAIRS


def test_broken_json_is_not_salvaged_piecemeal():
    text = json.dumps({"pairs": PAIRS})
    with pytest.raises(ReplyParseError) as err:
        parse_reply(text[: len(text) // 2] + "}}")
    assert err.value.reason == "unparseable"


@pytest.mark.parametrize(
    ("content", "finish", "reason"),
    [
        (json.dumps({"pairs": PAIRS}), "length", "truncated"),  # even when the part received parses
        ("", "stop", "empty_reply"),
        (None, "stop", "empty_reply"),
        ("I cannot help with that.", "stop", "unparseable"),
        ('{"answer_count": 3}', "stop", "unparseable"),
        ("anything", "content_filter", "content_filter"),
    ],
)
def test_unusable_replies_raise_with_a_reason(content, finish, reason):
    with pytest.raises(ReplyParseError) as err:
        parse_reply(content, finish)
    assert err.value.reason == reason
