"""The versioned generation protocol: prompt wording, one-shot example and pair-filter rules.

Loaded from ``configs/instructions/prompts/<version>.yaml``; the file's version and SHA-256 go
into every raw record so each generated pair can be traced to the exact prompt that made it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from lavis.common.errors import ConfigError
from lavis.instructions.filters import FilterRules, PairFilter
from lavis.instructions.yaml_files import load_typed_yaml

DEFAULT_PROTOCOL = "instructions/prompts/clover_qa_v1.yaml"


@dataclasses.dataclass
class QAPair:
    question: str
    answer: str


@dataclasses.dataclass
class Example:
    caption: str
    pairs: list[QAPair]


@dataclasses.dataclass
class Protocol:
    version: str
    system: str
    user_template: str
    example: Example
    filter: FilterRules = dataclasses.field(default_factory=FilterRules)
    max_tokens: int = 800
    temperature: float = 0.7
    # the pairs of a reply form one conversation in order (later questions follow up on earlier
    # answers): each instruction then carries the earlier pairs as its history
    conversation: bool = False
    sha256: str = dataclasses.field(default="", init=False)

    def validate(self) -> None:
        if "{caption}" not in self.user_template:
            raise ConfigError("'user_template' must contain the placeholder {caption}")
        if not self.example.pairs:
            raise ConfigError("'example.pairs' must hold at least one question/answer pair")

    def example_reply(self) -> str:
        """The assistant turn of the one-shot example, in the JSON form the system prompt asks for."""
        pairs = [{"question": p.question, "answer": p.answer} for p in self.example.pairs]
        return json.dumps({"pairs": pairs}, ensure_ascii=False)

    def user_message(self, caption: str) -> str:
        return self.user_template.replace("{caption}", caption)

    def messages(self, caption: str) -> list[dict[str, str]]:
        """System rules, the worked example as a user/assistant exchange, then this caption."""
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user_message(self.example.caption)},
            {"role": "assistant", "content": self.example_reply()},
            {"role": "user", "content": self.user_message(caption)},
        ]


def load_protocol(path: str | os.PathLike | None = None) -> Protocol:
    """Read and validate a protocol YAML (default: the CLOVER v1 protocol under ``configs/``)."""
    protocol, file, text = load_typed_yaml(Protocol, path, DEFAULT_PROTOCOL, "prompt file")
    protocol.sha256 = hashlib.sha256(text).hexdigest()
    _, rejected = PairFilter(protocol.filter).apply(dataclasses.asdict(p) for p in protocol.example.pairs)
    if rejected:  # the one-shot example teaches the model; it must obey the rules itself
        raise ConfigError(f"prompt file {file}: example pair {rejected[0]['question']!r} breaks the filter ({rejected[0]['reason']})")
    return protocol
