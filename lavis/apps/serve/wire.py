"""The chat-completions wire format: a request body in, a :class:`ChatRequest` out (or a 4xx
:class:`APIError` naming the field), and response bodies / stream chunks out.

What a request may hold (docs/serving.md): ``model``, ``messages`` (roles ``system`` and
``developer``, accepted and not used; ``user`` with text and ``image_url`` parts; ``assistant``
with text), ``max_tokens`` (or ``max_completion_tokens``), ``temperature``, ``top_p``, ``n``,
``seed``, ``stream``, ``stream_options.include_usage``. Fields that would change the response's
shape and that this model cannot honour (``tools``, ``logprobs``, ``stop``, JSON
``response_format``) are refused rather than silently ignored; other fields are ignored.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from typing import Any

from lavis.apps.inference import Answer, Decoding
from lavis.apps.serve.errors import APIError, bad
from lavis.common.conversation import Turn

_ROLES = ("system", "developer", "user", "assistant")
_DATA_URL = re.compile(r"data:(?P<type>[^;,]*)(?P<params>(;[^;,]*)*),", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Limits:
    max_new_tokens: int = 256  # the largest max_tokens a request may ask for
    max_n: int = 8
    max_image_mb: float = 20.0
    max_image_megapixels: float = 40.0


@dataclasses.dataclass(frozen=True)
class SlideRegion:
    """An image URL ``slide://{id}?x=&y=&w=&h=[&mpp=]``: a level-0 box of a slide of ``--slides``."""

    slide_id: str
    x: int
    y: int
    w: int
    h: int
    mpp: float | None
    param: str  # where the URL was in the request


@dataclasses.dataclass
class ChatRequest:
    question: str
    history: list[Turn]
    image: bytes | SlideRegion  # encoded image (decoded later, off the event loop), or a slide region
    image_param: str  # where it came from, e.g. "messages[0].content[1].image_url"
    decoding: Decoding
    stream: bool = False
    include_usage: bool = False


def parse_chat_request(body: Any, model_id: str, defaults: Decoding, limits: Limits) -> ChatRequest:
    """Validate a decoded JSON body; every problem is an ``APIError`` naming the field."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object", None, "invalid_request")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad(f"'model' is required (a string; this server serves '{model_id}')", "model", "missing_model")
    if model != model_id:
        raise APIError(404, f"the model '{model}' does not exist here; this server serves '{model_id}' "
                            "(GET /v1/models)", "model_not_found", "model")
    _refuse_unsupported(body)
    question, history, image, image_param = _conversation(body.get("messages"), limits)
    decoding = _decoding(body, defaults, limits)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad(f"'stream' must be true or false, got {_show(stream)}", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise bad("'stream_options' must be an object like {\"include_usage\": true}", "stream_options")
    return ChatRequest(question, history, image, image_param, decoding, stream, bool(options.get("include_usage")))


def _refuse_unsupported(body: dict) -> None:
    refused = {
        "tools": bool(body.get("tools")),
        "functions": bool(body.get("functions")),
        "logprobs": bool(body.get("logprobs")),
        "stop": bool(body.get("stop")),
        "response_format": isinstance(body.get("response_format"), dict)
        and body["response_format"].get("type") not in (None, "text"),
    }
    for name, present in refused.items():
        if present:
            raise bad(f"'{name}' is not supported by this server (it answers questions about an image with text)",
                      name, "unsupported_parameter")


def _conversation(messages: Any, limits: Limits) -> tuple[str, list[Turn], bytes, str]:
    """(current question, earlier turns, the last image's bytes, where the image was)."""
    if not isinstance(messages, list) or not messages:
        raise bad("'messages' must be a non-empty list of {role, content} objects", "messages", "empty_messages")
    history: list[Turn] = []
    pending: list[str] = []  # user text not yet answered
    image: tuple[str, str] | None = None  # (url, param) of the last image given
    last_role = None
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(f"{where} must be an object with 'role' and 'content'", where)
        role = message.get("role")
        if role not in _ROLES:
            raise bad(f"{where}.role {_show(role)} is not supported (use one of {', '.join(_ROLES)})", f"{where}.role")
        texts, images = _content(message.get("content"), role, where)
        if role in ("system", "developer"):
            continue  # accepted for compatibility; the model was not trained with a system prompt
        last_role = role
        if role == "user":
            pending.extend(texts)
            if images:
                image = images[-1]
        elif pending:  # an assistant answer closes the turn it answers
            history.append(Turn(" ".join(pending), " ".join(texts)))
            pending = []
    if last_role != "user":
        raise bad("the last message must be the user's question (role 'user')", "messages")
    question = " ".join(pending).strip()
    if not question:
        raise bad("the last user message has no text: ask a question about the image", "messages", "missing_question")
    if image is None:
        raise bad("no image in the conversation: add a content part {\"type\": \"image_url\", \"image_url\": "
                  "{\"url\": \"data:image/png;base64,...\"}} to a user message", "messages", "missing_image")
    url, param = image
    if url[:8].lower() == "slide://":
        return question, history, slide_region(url, param), param
    return question, history, _image_bytes(url, param, limits), param


def _content(content: Any, role: str, where: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(texts, [(image url, param)]) of a message's content (a string or a list of parts)."""
    if isinstance(content, str):
        return ([content] if content.strip() else []), []
    if content is None and role in ("system", "developer", "assistant"):
        return [], []
    if not isinstance(content, list):
        raise bad(f"{where}.content must be a string or a list of content parts", f"{where}.content")
    texts, images = [], []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"].strip():
                texts.append(part["text"])
        elif kind == "image_url" and role == "user":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url  # also accept the bare-string form
            if not isinstance(url, str):
                raise bad(f"{at}.image_url must be an object with a 'url' string", f"{at}.image_url")
            images.append((url, f"{at}.image_url"))
        elif kind == "image_url":
            raise bad(f"{at}: only user messages may hold images", at)
        elif kind in ("refusal",) and role == "assistant":
            continue
        else:
            raise bad(f"{at}: unsupported content part {_show(kind)} (use 'text', or 'image_url' with a data: URL)", at)
    return texts, images


def slide_region(url: str, param: str) -> SlideRegion:
    """``slide://{id}?x=&y=&w=&h=[&mpp=]`` (level-0 pixels; the id as ``GET /v1/slides`` lists it)."""
    from urllib.parse import parse_qs, unquote, urlsplit

    expected = "slide://{id}?x=..&y=..&w=..&h=.. (level-0 pixels; optional &mpp=)"
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query, strict_parsing=True, max_num_fields=8)
    except ValueError:
        raise bad(f"{param}: not a slide region URL; expected {expected}", param, "invalid_image_url") from None
    slide_id = unquote(parts.netloc + parts.path)
    values: dict[str, float] = {}
    for key, low in (("x", 0), ("y", 0), ("w", 1), ("h", 1), ("mpp", None)):
        given = query.pop(key, None)
        if given is None:
            if key != "mpp":
                raise bad(f"{param}: the slide region URL lacks '{key}'; expected {expected}", param, "invalid_image_url")
            continue
        try:
            number = float(given[-1]) if key == "mpp" else int(given[-1])
        except ValueError:
            number = None
        if number is None or (key == "mpp" and not 0 < number < 1e4) or (low is not None and not low <= number < 10**7):
            what = "a positive number of microns per pixel" if key == "mpp" else f"an integer >= {low}"
            raise bad(f"{param}: '{key}' must be {what}, got {given[-1][:20]!r}", param, "invalid_image_url")
        values[key] = number
    if query or not slide_id:
        raise bad(f"{param}: expected {expected}", param, "invalid_image_url")
    return SlideRegion(slide_id, int(values["x"]), int(values["y"]), int(values["w"]), int(values["h"]),
                       values.get("mpp"), param)


def _image_bytes(url: str, param: str, limits: Limits) -> bytes:
    """The bytes of a ``data:`` URL; remote URLs are refused (this server fetches nothing)."""
    scheme = url[:16].lower()
    if scheme.startswith(("http://", "https://")):
        raise bad("remote image URLs are not fetched by this server: send the image inline as a data: URL "
                  "(data:image/png;base64,...)", param, "remote_image_url")
    match = _DATA_URL.match(url)
    if not match:
        raise bad("image_url.url must be a data: URL (data:image/png;base64,...) or a slide region "
                  "(slide://{id}?x=..&y=..&w=..&h=..)", param, "invalid_image_url")
    if "base64" not in [p.strip().lower() for p in match.group("params").split(";")]:
        raise bad("the data: URL must be base64-encoded (data:image/png;base64,...)", param, "invalid_image_url")
    payload = url[match.end():]
    if len(payload) * 3 // 4 > limits.max_image_mb * 1024 * 1024 + 3:  # refuse before decoding
        raise APIError(413, f"{param}: the image has about {len(payload) * 3 / 4 / 1024 / 1024:.1f} MB, over this "
                            f"server's limit of {limits.max_image_mb:g} MB", "image_too_large", param)
    try:
        return base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise bad("the data: URL does not hold valid base64", param, "invalid_image") from None


def _decoding(body: dict, defaults: Decoding, limits: Limits) -> Decoding:
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(name)
    if max_tokens is None:
        max_tokens = min(defaults.max_new_tokens, limits.max_new_tokens)
    elif not _is_int(max_tokens) or not 1 <= max_tokens <= limits.max_new_tokens:
        raise bad(f"'{name}' must be an integer from 1 to {limits.max_new_tokens} (this server's limit), "
                  f"got {_show(max_tokens)}", name)
    temperature = _number(body, "temperature", 0.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0:
        raise bad("'top_p' must be > 0 and <= 1, got 0", "top_p")
    n = body.get("n")
    n = 1 if n is None else n
    if not _is_int(n) or not 1 <= n <= limits.max_n:
        raise bad(f"'n' must be an integer from 1 to {limits.max_n}, got {_show(n)}", "n")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise bad(f"'seed' must be an integer, got {_show(seed)}", "seed")
    return dataclasses.replace(
        defaults, max_new_tokens=max_tokens, min_new_tokens=min(defaults.min_new_tokens, max_tokens),
        temperature=temperature, top_p=top_p, n=n, seed=seed,
    )


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise bad(f"'{name}' must be a number from {low:g} to {high:g}, got {_show(value)}", name)
    return float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A value for an error message, short (never a whole image)."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- responses -------------------------------------------------------------------------------
def usage(answer: Answer) -> dict[str, int]:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens}


def completion(completion_id: str, created: int, model_id: str, answer: Answer) -> dict[str, Any]:
    """A ``chat.completion`` body; closed questions add ``yes_no`` to each choice."""
    choices = []
    for index, choice in enumerate(answer.choices):
        item: dict[str, Any] = {
            "index": index,
            "message": {"role": "assistant", "content": choice.text, "refusal": None},
            "logprobs": None,
            "finish_reason": choice.finish_reason,
        }
        if choice.yes_no is not None:
            item["yes_no"] = choice.yes_no
        choices.append(item)
    return {"id": completion_id, "object": "chat.completion", "created": created, "model": model_id,
            "choices": choices, "usage": usage(answer), "system_fingerprint": None}


def chunk(completion_id: str, created: int, model_id: str, choices: list[dict[str, Any]],
          usage_value: dict[str, int] | None = None, with_usage: bool = False) -> str:
    """One server-sent event holding a ``chat.completion.chunk``."""
    body: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                            "model": model_id, "system_fingerprint": None, "choices": choices}
    if with_usage:
        body["usage"] = usage_value
    return f"data: {json.dumps(body)}\n\n"


def content_chunk(completion_id: str, created: int, model_id: str, index: int, text: str, with_usage: bool) -> str:
    """A piece of choice ``index``'s text, as it is decided."""
    return chunk(completion_id, created, model_id,
                 [{"index": index, "delta": {"content": text}, "logprobs": None, "finish_reason": None}],
                 with_usage=with_usage)


def answer_chunks(completion_id: str, created: int, model_id: str, answer: Answer, with_usage: bool,
                  sent: list[str] | None = None) -> list[str]:
    """What is left of each choice's text after the pieces already ``sent``, its closing chunk
    (``finish_reason``, ``yes_no``), and the usage chunk when asked for."""
    events = []
    for index, choice in enumerate(answer.choices):
        already = sent[index] if sent else ""
        rest = choice.text[len(already):] if choice.text.startswith(already) else ""
        if rest:
            events.append(content_chunk(completion_id, created, model_id, index, rest, with_usage))
        closing: dict[str, Any] = {"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.finish_reason}
        if choice.yes_no is not None:
            closing["yes_no"] = choice.yes_no
        events.append(chunk(completion_id, created, model_id, [closing], with_usage=with_usage))
    if with_usage:
        events.append(chunk(completion_id, created, model_id, [], usage(answer), with_usage=True))
    return events


def role_chunks(completion_id: str, created: int, model_id: str, n: int, with_usage: bool) -> str:
    return "".join(
        chunk(completion_id, created, model_id,
              [{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}],
              with_usage=with_usage)
        for i in range(n)
    )


DONE = "data: [DONE]\n\n"


def error_event(err: APIError) -> str:
    """An error after the stream started (the status line is already 200): the official client raises it."""
    return f"data: {json.dumps(err.body())}\n\n"
