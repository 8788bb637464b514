"""A local server that no web page can drive: Host allow-list (DNS rebinding), JSON-only POST
bodies, CORS only for configured origins; bodies that are not plain data (deep nesting, huge or
non-finite numbers, unpaired surrogates) are 400s; and a fuzz over the request schema never gets
a 500."""

from __future__ import annotations

import copy
import http.client
import json
import logging
import random
from urllib.parse import urlparse

import pytest


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            host: str | None = None) -> tuple[int, dict, bytes]:
    """(status, headers (lower-case), body) of one raw HTTP request; ``host`` overrides the Host header."""
    parts = urlparse(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host or parts.netloc)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def chat(url: str, body: dict | bytes, **kwargs) -> tuple[int, dict, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    status, response_headers, data = request(url, "POST", "/v1/chat/completions", raw, headers, **kwargs)
    return status, response_headers, json.loads(data)


@pytest.fixture(scope="module")
def guarded(make_server):
    from lavis.apps.serve.wire import Limits

    with make_server(limits=Limits(max_new_tokens=4, max_n=2), allowed_hosts=("localhost", "127.0.0.1", "slides.lab"),
                     cors_origins=("https://viewer.example.org",)) as running:
        yield running


@pytest.fixture(scope="module")
def good(tiles, user):
    return {"model": "tiny-clover", "messages": [user("is the tissue dense", tiles[0])], "max_tokens": 3}


def test_only_allowed_host_names_are_answered(guarded, good):
    url, _ = guarded
    port = urlparse(url).port
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
        status, _, error = chat(url, good, host=host)
        assert (status, error["error"]["code"]) == (400, "host_not_allowed"), host
        assert "--allowed-hosts" in error["error"]["message"]
        assert request(url, "GET", "/", host=host)[0] == 400  # the page too: a rebound page cannot read it
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"SLIDES.lab:{port}"):
        assert chat(url, good, host=host)[0] == 200, host


def test_post_bodies_must_be_json(guarded, good):
    url, _ = guarded
    raw = json.dumps(good).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": content_type} if content_type else {}
        status, _, data = request(url, "POST", "/v1/chat/completions", raw, headers)
        assert (status, json.loads(data)["error"]["code"]) == (415, "unsupported_media_type"), content_type
    assert request(url, "POST", "/v1/chat/completions", raw, {"Content-Type": "application/json; charset=utf-8"})[0] == 200


def test_cors_only_for_configured_origins(guarded, good):
    url, _ = guarded
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    # a page elsewhere: its preflight is refused and carries no CORS header; a POST from it is refused
    status, headers, _ = request(url, "OPTIONS", "/v1/chat/completions", None, {"Origin": "http://evil.example", **preflight})
    assert status == 403 and "access-control-allow-origin" not in headers
    status, headers, error = chat(url, good, headers={"Origin": "http://evil.example"})
    assert (status, error["error"]["code"]) == (403, "origin_not_allowed") and "access-control-allow-origin" not in headers
    assert chat(url, good, headers={"Origin": "null"})[0] == 403
    # the configured origin: preflight answered, responses carry its origin
    origin = "https://viewer.example.org"
    status, headers, _ = request(url, "OPTIONS", "/v1/chat/completions", None, {"Origin": origin, **preflight})
    assert status == 204 and headers["access-control-allow-origin"] == origin
    assert "POST" in headers["access-control-allow-methods"] and "content-type" in headers["access-control-allow-headers"].lower()
    status, headers, reply = chat(url, good, headers={"Origin": origin})
    assert status == 200 and headers["access-control-allow-origin"] == origin and reply["choices"]
    # the page itself (same origin) and clients without an Origin: no CORS headers at all
    status, headers, _ = chat(url, good, headers={"Origin": url})
    assert status == 200 and "access-control-allow-origin" not in headers
    assert "access-control-allow-origin" not in chat(url, good)[1]


def test_bodies_that_are_not_plain_data_are_400(guarded, good, caplog):
    url, service = guarded
    caplog.set_level(logging.INFO)
    deep = b'{"model": "tiny-clover", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cases = {
        "seed 2**70": ({**good, "temperature": 1.0, "seed": 2**70}, "seed"),
        "unpaired surrogate": (json.dumps({**good, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "is it dense \ud800?"}, good["messages"][0]["content"][1]]}]}).encode(),
            "messages[0].content[0].text"),
        "nested 100,000 deep": (deep, None),
        "nested 40 deep": ({**good, "user": json.loads("[" * 40 + "]" * 40)}, None),
        "NaN": (json.dumps({**good, "temperature": float("nan")}).encode(), None),
        "1e999": (json.dumps(good).replace('"max_tokens": 3', '"max_tokens": 1e999').encode(), None),
        "huge integer in an ignored field": ({**good, "user": 10**30}, "user"),
    }
    for name, (body, param) in cases.items():
        status, _, error = chat(url, body)
        assert status == 400, name
        assert error["error"]["code"] in ("invalid_value", "invalid_json"), name
        if param:
            assert error["error"]["param"] == param, name
        assert chat(url, good)[0] == 200, f"after {name}"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no tracebacks in the log"
    assert service.batcher.stats.failed == 0


WEIRD_NUMBERS = [None, True, False, 0, -1, 1, 2, 7, 2**31, 2**63, -(2**63) - 1, 2**70, 1e308, -1e-308, 0.5, 2.5,
                 float("inf"), float("nan")]
WEIRD_TEXTS = ["", " ", "x", "\ud800", "\udfff tail", "é" * 3, "A" * 3000, "user", "assistant", "system", "tool",
               "text", "image_url", "data:image/png;base64,", "data:;base64,QUJD", "http://127.0.0.1:9/x.png",
               "data:image/png;base64,@@@", "is it dense?"]


def weird(rng: random.Random, image_url: str):
    pick = rng.random()
    if pick < 0.35:
        return rng.choice(WEIRD_NUMBERS)
    if pick < 0.7:
        return rng.choice(WEIRD_TEXTS)
    if pick < 0.8:
        depth = rng.choice([2, 20, 33, 200])
        return json.loads("[" * depth + "]" * depth) if depth < 100 else {"deep": [[[]]] * 3}
    return rng.choice([[], {}, [None], {"type": "text"}, {"type": "text", "text": None},
                       {"type": "image_url", "image_url": {"url": image_url}}, {"type": "image_url", "image_url": "x"},
                       {"role": "user", "content": [{"type": "text", "text": "is it dense?"}]},
                       {"role": "assistant", "content": None}, {"include_usage": "yes"}])


def paths(value, prefix=()):
    """Every (path) into a JSON value, the root excluded."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield (*prefix, i)
            yield from paths(item, (*prefix, i))


FIELDS = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "seed", "stream",
          "stream_options", "tools", "stop", "logprobs", "response_format", "user", "presence_penalty"]


def mutate(rng: random.Random, good: dict, image_url: str) -> bytes:
    body = copy.deepcopy(good)
    for _ in range(rng.randint(1, 3)):
        every = list(paths(body))
        action = rng.random()
        if action < 0.5 and every:  # replace a value
            path = rng.choice(every)
            parent = body
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = weird(rng, image_url)
        elif action < 0.65 and every:  # delete a key or an item
            path = rng.choice(every)
            parent = body
            for key in path[:-1]:
                parent = parent[key]
            del parent[path[-1]]
        elif action < 0.9:  # set a request field
            body[rng.choice(FIELDS)] = weird(rng, image_url)
        else:  # the whole body replaced
            body = weird(rng, image_url)
        if not isinstance(body, dict):
            break
    raw = json.dumps(body).encode()
    if rng.random() < 0.1:  # broken JSON
        raw = raw[: rng.randint(0, len(raw))]
    return raw


def test_fuzzed_requests_never_get_a_500(guarded, good, caplog):
    url, service = guarded
    caplog.set_level(logging.INFO)
    image_url = good["messages"][0]["content"][1]["image_url"]["url"]
    rng = random.Random(26)
    statuses = {}
    for case in range(300):
        raw = mutate(rng, good, image_url)
        status, _, data = request(url, "POST", "/v1/chat/completions", raw, {"Content-Type": "application/json"})
        assert status < 500, f"case {case}: {raw[:300]!r} -> {status} {data[:300]!r}"
        if status != 200:
            error = json.loads(data)["error"]
            assert error["message"] and error["code"], raw[:200]
        statuses[status] = statuses.get(status, 0) + 1
    assert statuses.get(200, 0) >= 10 and sum(v for k, v in statuses.items() if k >= 400) >= 150, statuses
    assert chat(url, good)[0] == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no tracebacks in the log"
    assert service.batcher.stats.failed == 0

