"""The pair filter (CLOVER's filtering step) and the versioned protocol file that configures it."""

from __future__ import annotations

import json

import pytest

from lavis.common.errors import ConfigError
from lavis.instructions.filters import PairFilter
from lavis.instructions.protocol import load_protocol


@pytest.fixture(scope="module")
def pair_filter() -> PairFilter:
    return PairFilter(load_protocol().filter)


GOOD = {"question": "How are the glands arranged in this image?", "answer": "They are crowded and back-to-back."}


@pytest.mark.parametrize(
    ("question", "answer", "reason"),
    [
        ("", "Glands.", "empty_question"),
        ("What is shown here?", "   ", "empty_answer"),
        ("Glands?", "Yes.", "question_length"),
        ("What is shown here?", " ".join(["word"] * 121), "answer_length"),
        ("What does the caption describe?", "Glands.", "mentions_source"),
        ("What is visible?", "The narrator points at glands.", "mentions_source"),
        ("What is visible?", "Necrosis is mentioned near the top.", "mentions_source"),
        ("What is the context of this image?", "Colonic mucosa.", "mentions_source"),
        ("When was this slide prepared?", "It was prepared in 2019.", "date"),
        ("When was this slide prepared?", "On March 3rd.", "date"),
        ("How is this image shown?", "At 40x with crowded glands.", "magnification"),
        ("How is this image shown?", "At high-power the nuclei are dark.", "magnification"),
        ("What is the magnification of this image?", "It is high.", "magnification"),
        ("What should the patient do?", "They should consult an oncologist.", "clinical_advice"),
    ],
)
def test_each_rule_rejects_with_its_reason(pair_filter, question, answer, reason):
    accepted, rejected = pair_filter.apply([GOOD, {"question": question, "answer": answer}])
    assert accepted == [GOOD]
    assert rejected == [{"question": question, "answer": answer, "reason": reason}]


def test_duplicate_questions_are_compared_without_case_and_punctuation(pair_filter):
    again = {"question": "how are the glands ARRANGED in this image", "answer": "Crowded."}
    accepted, rejected = pair_filter.apply([GOOD, again])
    assert accepted == [GOOD] and rejected[0]["reason"] == "duplicate_question"


def test_pairs_beyond_max_pairs_are_rejected_as_extra(pair_filter):
    pairs = [{"question": f"What is feature number {i} here?", "answer": f"Feature {i} is a gland."} for i in range(7)]
    accepted, rejected = pair_filter.apply(pairs)
    assert accepted == pairs[:5]
    assert [r["reason"] for r in rejected] == ["extra_pair", "extra_pair"]


def test_clean_medical_wording_passes(pair_filter):
    pairs = [
        {"question": "What do the nuclei look like?", "answer": "They are enlarged and hyperchromatic, with 2 to 3 nucleoli."},
        {"question": "Where is the lesion located?", "answer": "In the upper left, next to a vessel."},
    ]
    assert pair_filter.apply(pairs) == (pairs, [])


def test_protocol_messages_hold_rules_example_and_caption():
    protocol = load_protocol()
    messages = protocol.messages("Sheets of atypical cells.")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert "JSON" in messages[0]["content"] and "4 or 5" in messages[0]["content"]
    assert json.loads(messages[2]["content"])["pairs"][0]["question"] == protocol.example.pairs[0].question
    assert messages[3]["content"].endswith("Sheets of atypical cells.")
    assert protocol.version == "clover_qa_v1" and len(protocol.sha256) == 64


def _write_protocol(tmp_path, **changes):
    import yaml

    from lavis.common.paths import config_path

    data = yaml.safe_load(config_path("instructions/prompts/clover_qa_v1.yaml").read_text())
    data.update(changes)
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_protocol_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match=r"\{caption\}"):
        load_protocol(_write_protocol(tmp_path, user_template="no placeholder"))
    with pytest.raises(ConfigError, match="invalid regular expression"):
        load_protocol(_write_protocol(tmp_path, filter={"banned": {"x": ["(unclosed"]}}))
    with pytest.raises(ConfigError, match="unknown config key .*temprature"):
        load_protocol(_write_protocol(tmp_path, temprature=0.2))
    bad_example = {"caption": "c", "pairs": [{"question": "What does the caption say here?", "answer": "Glands."}]}
    with pytest.raises(ConfigError, match="mentions_source"):
        load_protocol(_write_protocol(tmp_path, example=bad_example))
