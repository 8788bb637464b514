"""One chat-completion call with pacing and retries, over the ``openai`` client library.

The library's own retries are switched off (``max_retries=0``) so that every retry is paced by
the shared limiter, honours Retry-After, and counts toward our bounded attempts. Errors are
sorted into transient (429, 408, 409, 5xx, timeouts, unreadable responses: retried), per-caption
(other 4xx: that caption fails) and fatal (bad key, unknown model, no quota: the run stops).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai

from lavis.instructions.pricing import estimate_prompt_tokens, estimate_tokens
from lavis.instructions.ratelimit import RateLimiter, backoff_delay, exhausted_for, retry_after_seconds

logger = logging.getLogger("lavis.instructions")

FATAL_STATUS = {401, 403, 404}
RETRY_STATUS = {408, 409, 429}


def public_url(url: str | None) -> str | None:
    """The URL without user:password or query (either may carry credentials), for messages."""
    if url is None:
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class APICallError(Exception):
    """A call that did not produce a reply. ``fatal``: no later call can succeed either."""

    def __init__(self, reason: str, attempts: int, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.attempts, self.fatal = reason, attempts, fatal


@dataclasses.dataclass
class ChatReply:
    content: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    usage_reported: bool  # False: the server sent no ``usage``; tokens are estimates
    attempts: int  # HTTP requests this reply took (1 + retries)


@dataclasses.dataclass
class RetryPolicy:
    max_retries: int = 6  # transient failures retried per call
    backoff_base: float = 1.0  # seconds; delay ~ uniform(0, min(backoff_max, base * 2**attempt))
    backoff_max: float = 60.0
    timeout: float = 60.0  # seconds per HTTP request


def _status_error_reason(err: openai.APIStatusError) -> tuple[str, bool, bool]:
    """(reason, retryable, fatal) for an HTTP error status."""
    code = getattr(err, "code", None) or ""
    reason = f"http_{err.status_code}" + (f" ({code})" if code else "") + f": {err.message[:200]}"
    if code == "insufficient_quota":  # a 429 that waiting does not fix
        return reason, False, True
    if err.status_code in RETRY_STATUS or err.status_code >= 500:
        return reason, True, False
    return reason, False, err.status_code in FATAL_STATUS


class ChatClient:
    """Sends chat requests to OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp)."""

    def __init__(
        self,
        model: str,
        api_key: str,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        request_options: dict[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.model = model
        self.retry = retry or RetryPolicy()
        self.limiter = limiter or RateLimiter()
        self.request_options = dict(request_options or {})  # temperature, seed, response_format
        self.sleep = sleep
        self.rng = rng or random.Random()
        self._api = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=self.retry.timeout)

    def close(self) -> None:
        self._api.close()

    def _wait(self, attempt: int, headers: Any, reason: str) -> None:
        server_wait = retry_after_seconds(headers)
        delay = backoff_delay(attempt, self.retry.backoff_base, self.retry.backoff_max, server_wait, self.rng)
        if server_wait is not None:
            self.limiter.hold(server_wait)  # the server's wait applies to every worker
        logger.info("retry %d/%d in %.2fs after %s", attempt + 1, self.retry.max_retries, delay, reason)
        self.sleep(delay)

    def complete(self, messages: list[dict[str, str]], max_tokens: int) -> ChatReply:
        """One reply, retrying transient failures; raises ``APICallError`` when none comes."""
        reserved = estimate_prompt_tokens(messages) + max_tokens
        reason = ""
        unreachable = True  # every attempt failed to connect: nothing listens there
        for attempt in range(self.retry.max_retries + 1):
            self.limiter.acquire(reserved)
            headers: Any = None
            try:
                raw = self._api.chat.completions.with_raw_response.create(
                    model=self.model, messages=messages, max_tokens=max_tokens, **self.request_options
                )
                headers = raw.headers
                completion = raw.parse()
                if not completion.choices:
                    raise ValueError("the response has no choices")
            except openai.APIStatusError as err:
                unreachable = False
                headers = err.response.headers
                reason, retryable, fatal = _status_error_reason(err)
                if not retryable:
                    self.limiter.settle(reserved, 0)
                    raise APICallError(reason, attempt + 1, fatal) from None
            except openai.APITimeoutError:
                unreachable = False
                reason = f"timeout after {self.retry.timeout:g}s"
            except openai.APIConnectionError as err:
                cause = err.__cause__ or err.__context__
                reason = f"connection_error: {err}" + (f" ({cause})" if cause else "")
            except (ValueError, TypeError, AttributeError, openai.APIResponseValidationError) as err:
                unreachable = False
                reason = f"bad_response: {type(err).__name__}: {str(err)[:200]}"
            else:
                return self._reply(completion, messages, headers, reserved, attempt + 1)
            self.limiter.settle(reserved, 0)
            if attempt < self.retry.max_retries:
                self._wait(attempt, headers, reason)
        attempts = self.retry.max_retries + 1
        if unreachable:  # no later caption can get through either: stop the run
            raise APICallError(
                f"cannot connect to {public_url(str(self._api.base_url))} after {attempts} attempt(s): {reason} "
                "(is the server running, and is --base-url right?)", attempts, fatal=True,
            )
        raise APICallError(reason, attempts)

    def _reply(self, completion: Any, messages: list, headers: Any, reserved: int, attempts: int) -> ChatReply:
        choice = completion.choices[0]
        content = choice.message.content if choice.message is not None else None
        usage = completion.usage
        if usage is not None:
            prompt_tokens, completion_tokens = int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)
        else:  # some local servers omit usage: fall back to estimates, flagged as such
            prompt_tokens, completion_tokens = estimate_prompt_tokens(messages), estimate_tokens(content or "")
        self.limiter.settle(reserved, prompt_tokens + completion_tokens)
        pause = exhausted_for(headers)
        if pause:
            self.limiter.hold(pause)
        return ChatReply(
            content=content,
            finish_reason=choice.finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            usage_reported=usage is not None,
            attempts=attempts,
        )
