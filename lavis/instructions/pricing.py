"""Token prices, cost arithmetic and token estimates for dry runs and rate limiting."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lavis.common.errors import ConfigError
from lavis.instructions.yaml_files import load_typed_yaml

DEFAULT_PRICES = "instructions/prices.yaml"
CHARS_PER_TOKEN = 4.0  # OpenAI's rule of thumb for English BPE text; dry runs calibrate it on real usage
MESSAGE_OVERHEAD = 4  # role and separator tokens the chat format adds per message
REPLY_PRIMING = 3  # tokens that start the assistant's reply


@dataclasses.dataclass(frozen=True)
class Price:
    """USD per one million tokens."""

    input: float
    output: float

    def validate(self) -> None:
        if self.input < 0 or self.output < 0:
            raise ConfigError(f"prices must be >= 0, got input={self.input}, output={self.output}")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


@dataclasses.dataclass
class PriceTable:
    models: dict[str, Price]

    def lookup(self, model: str) -> Price | None:
        """Exact key, else the longest key that ``model`` starts with (dated snapshots)."""
        if model in self.models:
            return self.models[model]
        prefixes = [key for key in self.models if model.startswith(key)]
        return self.models[max(prefixes, key=len)] if prefixes else None


def load_prices(path: str | os.PathLike | None = None) -> PriceTable:
    return load_typed_yaml(PriceTable, path, DEFAULT_PRICES, "price table")[0]


def resolve_price(
    model: str, table: PriceTable, price_in: float | None = None, price_out: float | None = None
) -> Price | None:
    """The command-line prices where given, else the table's; None when the model has no price."""
    listed = table.lookup(model)
    if price_in is None and price_out is None:
        return listed
    if listed is None and (price_in is None or price_out is None):
        raise ConfigError(f"model '{model}' is not in the price table: pass both --price-in and --price-out")
    price = Price(
        input=price_in if price_in is not None else listed.input,  # type: ignore[union-attr]
        output=price_out if price_out is not None else listed.output,  # type: ignore[union-attr]
    )
    price.validate()
    return price


def estimate_tokens(text: str, chars_per_token: float = CHARS_PER_TOKEN) -> int:
    return math.ceil(len(text) / chars_per_token) if text else 0


def estimate_prompt_tokens(messages: Sequence[dict[str, str]], chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """Prompt tokens of a chat request, the way the chat format counts them (content + overhead)."""
    content = sum(estimate_tokens(m["content"], chars_per_token) for m in messages)
    return content + MESSAGE_OVERHEAD * len(messages) + REPLY_PRIMING


class UsageEstimator:
    """Expected tokens per request, for dry runs and the cost budget.

    Starts from the chars/token rule and the size of the one-shot example reply; once real
    replies exist (a resumed run), ``calibrate`` rescales both to the usage servers reported.
    """

    def __init__(self, messages_for: Callable[[str], list[dict[str, str]]], example_reply: str) -> None:
        self.messages_for = messages_for
        self.prompt_scale = 1.0
        self.completion = float(estimate_tokens(example_reply))
        self.calibrated_on = 0

    def prompt_tokens(self, caption: str) -> int:
        return math.ceil(estimate_prompt_tokens(self.messages_for(caption)) * self.prompt_scale)

    def calibrate(self, raw_records: Iterable[dict[str, Any]]) -> None:
        """Fit to records whose usage the server reported (estimated usage teaches nothing)."""
        real = [r for r in raw_records if r["usage"].get("replies") and not r["usage"].get("estimated")]
        if not real:
            return
        estimated = sum(estimate_prompt_tokens(self.messages_for(r["caption"])) * r["usage"]["replies"] for r in real)
        replies = sum(r["usage"]["replies"] for r in real)
        self.prompt_scale = sum(r["usage"]["prompt_tokens"] for r in real) / max(1, estimated)
        self.completion = sum(r["usage"]["completion_tokens"] for r in real) / replies
        self.calibrated_on = len(real)

    def cost(self, caption: str, price: Price | None) -> float:
        return 0.0 if price is None else price.cost(self.prompt_tokens(caption), math.ceil(self.completion))
