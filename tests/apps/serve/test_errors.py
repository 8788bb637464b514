"""Every bad request gets its 4xx with an OpenAI-style error body naming the problem, a failure
inside generation fails only its request (500), and the server keeps serving after each."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request

import pytest


def post(url: str, body: bytes | dict, headers: dict | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", data,
                                     {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def get(url: str, headers: dict | None = None) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            raw = response.read().decode()
            return response.status, json.loads(raw) if "json" in response.headers["Content-Type"] else raw
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def noise_png(size: int) -> bytes:
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def limited(make_server):
    """A server with small limits: 20 kB images, 0.05 megapixels (a 224 x 224 tile passes, 300 x 300 does not)."""
    from lavis.apps.serve.wire import Limits

    with make_server(limits=Limits(max_new_tokens=32, max_n=4, max_image_mb=0.02, max_image_megapixels=0.05)) as s:
        yield s


def test_each_bad_request_gets_its_4xx_and_the_next_good_one_succeeds(limited, tiles, user, data_url, png_bytes):
    url, service = limited
    good = {"model": "tiny-clover", "messages": [user("is the tissue dense", tiles[0])], "max_tokens": 4}
    truncated = tiles[0].read_bytes()[:-200]

    def with_image(url_value: str) -> dict:
        content = [{"type": "text", "text": "is the tissue dense"}, {"type": "image_url", "image_url": {"url": url_value}}]
        return {"model": "tiny-clover", "messages": [{"role": "user", "content": content}]}

    cases = {
        "not an image": (with_image(data_url(b"this is plain text, not a picture")), 400, "invalid_image"),
        "truncated image": (with_image(data_url(truncated)), 400, "invalid_image"),
        "over the byte limit": (with_image(data_url(noise_png(120))), 413, "image_too_large"),
        "over the pixel limit": (with_image(data_url(png_bytes(300, 300))), 413, "image_too_large"),
        "body over the limit": ({**good, "messages": [user("x" * 1_200_000, tiles[0])]}, 413, "request_too_large"),
        "remote image url": (with_image("https://example.org/tile.png"), 400, "remote_image_url"),
        "not a data url": (with_image("file:///etc/passwd"), 400, "invalid_image_url"),
        "bad base64": (with_image("data:image/png;base64,@@@notbase64@@@"), 400, "invalid_image"),
        "no image": ({"model": "tiny-clover", "messages": [{"role": "user", "content": "is it dense?"}]}, 400,
                     "missing_image"),
        "bad json": (b'{"model": "tiny-clover", "messages": [', 400, "invalid_json"),
        "body not an object": (b"[1, 2]", 400, "invalid_request"),
        "unknown model": ({**good, "model": "gpt-4o"}, 404, "model_not_found"),
        "no model": ({k: v for k, v in good.items() if k != "model"}, 400, "missing_model"),
        "max_tokens zero": ({**good, "max_tokens": 0}, 400, "invalid_value"),
        "max_tokens over the limit": ({**good, "max_tokens": 33}, 400, "invalid_value"),
        "max_tokens not a number": ({**good, "max_tokens": "5"}, 400, "invalid_value"),
        "empty messages": ({**good, "messages": []}, 400, "empty_messages"),
        "no question": ({**good, "messages": [user(" ", tiles[0])]}, 400, "missing_question"),
        "last message not the user's": ({**good, "messages": [*good["messages"], {"role": "assistant", "content": "no"}]},
                                        400, "invalid_value"),
        "unknown role": ({**good, "messages": [{"role": "tool", "content": "x"}]}, 400, "invalid_value"),
        "temperature out of range": ({**good, "temperature": 3}, 400, "invalid_value"),
        "n over the limit": ({**good, "n": 5}, 400, "invalid_value"),
        "unsupported tools": ({**good, "tools": [{"type": "function"}]}, 400, "unsupported_parameter"),
        "question too long": ({**good, "messages": [user("is it dense " * 60, tiles[0])]}, 400,
                              "context_length_exceeded"),
    }
    for name, (body, status, code) in cases.items():
        got, error = post(url, body)
        assert (got, error["error"]["code"]) == (status, code), name
        assert error["error"]["message"] and error["error"]["type"] == "invalid_request_error", name
        assert len(error["error"]["message"]) < 400, f"{name}: the message must not echo the request"
        ok, reply = post(url, good)
        assert ok == 200 and reply["choices"][0]["message"]["content"].strip(), f"after {name}"
    assert service.batcher.stats.failed == 0


def test_errors_reach_the_openai_client_as_its_exception_types(limited, tiles, user):
    import openai

    url, _ = limited
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    with pytest.raises(openai.BadRequestError, match="remote image URLs are not fetched"):
        client.chat.completions.create(model="tiny-clover", messages=[{"role": "user", "content": [
            {"type": "text", "text": "is it dense?"},
            {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/tile.png"}}]}])
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="other", messages=[user("is it dense?", tiles[0])])
    assert caught.value.code == "model_not_found"


def test_unknown_routes_and_methods_answer_in_the_same_format(limited):
    url, _ = limited
    assert get(f"{url}/v1/nothing")[0] == 404
    status, body = get(f"{url}/v1/chat/completions")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"


def test_a_generation_failure_fails_only_its_request(make_server, tiles, user):
    from concurrent.futures import ThreadPoolExecutor

    with make_server() as (url, service):
        decoder = service.batcher.loop.decoder
        start = decoder.start

        def flaky(prefix, prompts):  # a request whose question breaks the model
            if any("explode" in prompt for prompt in prompts):
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return start(prefix, prompts)

        decoder.start = flaky
        bodies = [{"model": "tiny-clover", "messages": [user(q, tiles[0])], "max_tokens": 4}
                  for q in ("is the tissue dense", "please explode", "which stain is used")]
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda body: post(url, body), bodies))
        assert [status for status, _ in results] == [200, 500, 200]
        error = results[1][1]["error"]
        assert error["type"] == "server_error" and error["code"] == "generation_failed"
        assert "illegal memory access" in error["message"]
        assert post(url, bodies[0])[0] == 200  # and it keeps serving
        assert service.batcher.stats.failed == 1


def test_api_key_is_required_when_set(make_server, tiles, user):
    import openai

    with make_server(api_key="s3cret-key") as (url, _):
        body = {"model": "tiny-clover", "messages": [user("is the tissue dense", tiles[0])], "max_tokens": 3}
        status, error = post(url, body)
        assert status == 401 and error["error"]["code"] == "invalid_api_key"
        assert post(url, body, {"Authorization": "Bearer wrong"})[0] == 401
        assert post(url, body, {"Authorization": "Bearer s3cret-key"})[0] == 200
        assert get(f"{url}/v1/models")[0] == 401 and get(f"{url}/examples")[0] == 401
        assert get(f"{url}/health")[0] == 200 and "<title>" in get(f"{url}/")[1]  # the page asks for the key
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0).models.list()
        assert openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret-key", max_retries=0).models.list().data


def test_a_full_queue_answers_429(make_server, tiles, user):
    with make_server(max_queue=0) as (url, _):
        status, error = post(url, {"model": "tiny-clover", "messages": [user("is it dense", tiles[0])]})
    assert status == 429 and error["error"]["code"] == "server_busy"
