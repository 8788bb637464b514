"""A request body as JSON, refused with a 400 naming the place when it is not plain data.

``json.loads`` alone accepts what the model must never see: ``NaN`` and ``Infinity`` (and
``1e999``, which becomes infinity), integers of any size (``seed: 2**70`` overflows the random
generator), strings with unpaired UTF-16 surrogates (``"\\ud800"``, which no tokenizer can encode),
and nesting deep enough to exhaust Python's recursion. Each is a 400 here, before any field is read.
"""

from __future__ import annotations

import json
import math
from typing import Any

from lavis.apps.serve.errors import bad

MAX_DEPTH = 32  # a chat request nests about 5 deep (messages[0].content[1].image_url.url)
INT64 = (-(2**63), 2**63 - 1)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    """The decoded body; ``APIError`` 400 naming where it breaks the rules above."""
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise bad(f"the request body is nested too deeply (at most {MAX_DEPTH} levels)", None, "invalid_json") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise bad(f"the request body is not valid JSON ({str(err)[:160]})", None, "invalid_json") from None
    check_values(body)
    return body


def check_values(body: Any) -> None:
    """Depth, number ranges and strings, without recursion (the body may be deep)."""
    stack: list[tuple[Any, str, int]] = [(body, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise bad(f"the request body is nested more than {MAX_DEPTH} levels deep (at {where or 'the top'})",
                      where or None, "invalid_json")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, f"{where}.{key[:40]}" if where else key[:40])
                stack.append((item, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
            raise bad(f"{where or 'the body'}: the number is out of range (integers must fit in 64 bits)", where or None)
        elif isinstance(value, float) and not math.isfinite(value):
            raise bad(f"{where or 'the body'}: the number is out of range (not a finite number)", where or None)


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(f"{where or 'the body'}: the text holds an unpaired UTF-16 surrogate (\\ud800-\\udfff escapes must "
                  "come in pairs)", where or None) from None
