import pytest

from lavis.common.errors import ConfigError
from lavis.processors import build_processor

PATHOLOGY_TOKENS = ["Gleason 3+4", "Ki-67 (30%)", "2.5 mm", "HER2/neu", "pT2a N0", "CD3+/CD8+", "10^3/mm²", "~5 µm"]


@pytest.mark.parametrize("name", ["pathology_caption", "pathology_question"])
def test_pathology_tokens_survive(name):
    processor = build_processor({"name": name}, "text")
    text = "  ".join(PATHOLOGY_TOKENS)
    out = processor(f"\t{text} \n")
    for token in PATHOLOGY_TOKENS:
        assert token in out
    assert out == " ".join(PATHOLOGY_TOKENS)


def test_whitespace_is_normalised():
    processor = build_processor({"name": "pathology_caption"}, "text")
    assert processor("Tumor\n\ncells\u00a0with\u200b  atypia ") == "Tumor cells with atypia"


def test_max_words_and_prompt_template():
    processor = build_processor(
        {"name": "pathology_caption", "max_words": 4, "prompt": "a pathology image of {}"}, "text"
    )
    assert processor("HER2/neu 3+ membranous staining in 30% of cells") == "a pathology image of HER2/neu 3+ membranous staining"
    assert build_processor({"name": "pathology_caption", "max_words": 0}, "t")(" ".join(["w"] * 500)).count("w") == 500


def test_prompt_with_braces_in_text_is_safe():
    processor = build_processor({"name": "pathology_question", "prompt": "Question: {} Answer:"}, "text")
    assert processor("Is {x} present?") == "Question: Is {x} present? Answer:"


def test_lowercase_is_opt_in_and_defaults_differ():
    assert build_processor({"name": "pathology_caption", "lowercase": True}, "t")("Ki-67 HIGH") == "ki-67 high"
    assert build_processor({"name": "pathology_question"}, "t").cfg.max_words == 128
    assert build_processor({"name": "pathology_caption"}, "t").cfg.max_words == 64


def test_bad_config():
    with pytest.raises(ConfigError, match="exactly once"):
        build_processor({"name": "pathology_caption", "prompt": "no placeholder"}, "datasets.q.text_processor.train")
    with pytest.raises(ConfigError, match="max_words"):
        build_processor({"name": "pathology_caption", "max_words": -1}, "t")
    with pytest.raises(TypeError, match="expected a string"):
        build_processor({"name": "pathology_caption"}, "t")(None)
