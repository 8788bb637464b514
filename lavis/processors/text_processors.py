"""Text processors for captions and questions that keep pathology notation intact.

Generic caption cleaners strip punctuation and lower-case, which turns "Gleason 3+4" into
"gleason 3 4", "Ki-67 (30%)" into "ki 67 30", "2.5 mm" into "2 5 mm" and "HER2/neu" into
"her2 neu" - changing the meaning. These processors only normalise whitespace (including
newlines, tabs, non-breaking and zero-width spaces), cap the number of words, and optionally
lower-case and wrap the text in a prompt template such as ``"a pathology image of {}"``.
"""

from __future__ import annotations

import dataclasses
import re

from lavis.common.errors import ConfigError
from lavis.processors.base_processor import BaseProcessor, ProcessorConfig, register_processor

_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")


@dataclasses.dataclass
class PathologyTextConfig(ProcessorConfig):
    # Keep at most this many whitespace-separated words (0 = no limit).
    max_words: int = 64
    # "{}" is replaced by the cleaned text, e.g. "a pathology image of {}".
    prompt: str = "{}"
    lowercase: bool = False

    def validate(self) -> None:
        if self.max_words < 0:
            raise ConfigError(f"'max_words' must be >= 0, got {self.max_words}")
        if self.prompt.count("{}") != 1:
            raise ConfigError(f"'prompt' must contain '{{}}' exactly once, got {self.prompt!r}")


def clean_text(text: str, max_words: int = 0, lowercase: bool = False) -> str:
    """Collapse all whitespace to single spaces and cap the word count; nothing else changes."""
    words = _INVISIBLE.sub("", text).split()
    if max_words:
        words = words[:max_words]
    cleaned = " ".join(words)
    return cleaned.lower() if lowercase else cleaned


@register_processor("pathology_caption")
class PathologyCaption(BaseProcessor):
    """Caption cleanup for image-text alignment (stage 1) and captioning targets."""

    Config = PathologyTextConfig

    def __call__(self, text: str) -> str:
        if not isinstance(text, str):
            raise TypeError(f"{self.cfg.name}: expected a string, got {type(text).__name__}")
        cleaned = clean_text(text, self.cfg.max_words, self.cfg.lowercase)
        return self.cfg.prompt.replace("{}", cleaned)


@dataclasses.dataclass
class PathologyQuestionConfig(PathologyTextConfig):
    # Instructions and multiple-choice questions run longer than captions.
    max_words: int = 128


@register_processor("pathology_question")
class PathologyQuestion(PathologyCaption):
    """Question / instruction cleanup (stage 2 and VQA); same rules, longer default cap."""

    Config = PathologyQuestionConfig
