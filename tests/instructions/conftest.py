"""A real chat-completions HTTP server on 127.0.0.1 with injectable faults, and caption fixtures.

The server answers ``POST /v1/chat/completions`` like the OpenAI API (``choices[0].message.content``
and ``usage``). Replies are a deterministic function of the caption, so two runs over the same
captions produce the same records. A caption containing ``[faults: a, b, ...]`` gets those
behaviours on its successive requests, then normal replies. The serving loop handles a bounded
number of requests and stops by itself after a deadline, so a failing test cannot leave it running.
"""

from __future__ import annotations

import csv
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SENTINEL_KEY = "sk-test-SENTINEL-7f3a9c1e-do-not-leak"
FAULTS = re.compile(r"\[faults:\s*([^\]]*)\]")
CAPTION = re.compile(r"Image description:\n(.*)\Z", re.DOTALL)


def reply_pairs(caption: str) -> list[dict[str, str]]:
    """Six pairs per caption: three good ones and three the filter must reject."""
    n = re.search(r"#(\d+)", caption).group(1)
    return [
        {"question": f"What tissue is shown in image {n}?", "answer": f"Tissue sample {n} with glands."},
        {"question": f"How are the cells arranged in image {n}?", "answer": f"The cells form {n} small nests."},
        {"question": f"What does the caption say about image {n}?", "answer": "It describes glands."},
        {"question": f"What tissue is shown in image {n}?", "answer": "The same tissue again."},
        {"question": f"At what scale is image {n} shown?", "answer": "It is shown at 40x."},
        {"question": f"What do the nuclei look like in image {n}?", "answer": "They are round and dark."},
    ]


def content_for(behaviour: str, caption: str) -> tuple[str, str]:
    """(message content, finish_reason) of a 200 reply."""
    pairs = reply_pairs(caption)
    as_json = json.dumps({"pairs": pairs})
    if behaviour == "lines":
        return "\n".join(f'{i + 1}. question: "{p["question"]}"\nanswer: "{p["answer"]}"' for i, p in enumerate(pairs)), "stop"
    if behaviour == "fence":
        return f"Here are the pairs:\n```json\n{as_json}\n```\nHope this helps.", "stop"
    if behaviour == "broken_json":
        return as_json[: len(as_json) // 2] + "}}", "stop"
    if behaviour == "garbage":
        return "I am sorry, I cannot help with that request.", "stop"
    if behaviour == "truncated":
        return as_json[: len(as_json) // 3], "length"
    return as_json, "stop"


class FakeChatServer:
    def __init__(self, max_requests: int = 2000, lifetime: float = 120.0, delay: float = 0.0) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # every request: caption, behaviour, time, max_tokens, auth
        self.usage: list[tuple[int, int]] = []  # usage of every delivered 200 reply
        self.seen: dict[str, int] = {}
        self.default = "ok"
        self.timeout_sleep = 1.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.timeout = 0.05
        self.httpd.handle_error = lambda request, address: None  # clients that time out close early
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        self.stopped = threading.Event()
        self.deadline = time.monotonic() + lifetime
        self.max_requests = max_requests
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set() and time.monotonic() < self.deadline and len(self.requests) < self.max_requests:
            self.httpd.handle_request()
        self.httpd.server_close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def behaviour(self, caption: str) -> str:
        match = FAULTS.search(caption)
        plan = [b.strip() for b in match.group(1).split(",")] if match else []
        with self.lock:
            count = self.seen.get(caption, 0)
            self.seen[caption] = count + 1
        return plan[count] if count < len(plan) else self.default

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        caption = CAPTION.search(body["messages"][-1]["content"]).group(1)
        behaviour = self.behaviour(caption)
        with self.lock:
            self.requests.append(
                {
                    "caption": caption,
                    "behaviour": behaviour,
                    "time": time.monotonic(),
                    "max_tokens": body.get("max_tokens"),
                    "auth": handler.headers.get("Authorization"),
                    "body": body,
                }
            )
        if self.delay:
            time.sleep(self.delay)
        error = {"error": {"message": "injected", "type": "test", "code": None}}
        if behaviour == "429":
            return self._send(handler, 429, json.dumps(error).encode(), {"Retry-After": "0.3"})
        if behaviour == "500":
            return self._send(handler, 500, json.dumps(error).encode())
        if behaviour == "401":
            return self._send(handler, 401, json.dumps(error).encode())
        if behaviour == "timeout":
            time.sleep(self.timeout_sleep)  # longer than the client's timeout: it gives up first
            return None
        if behaviour == "bad_body":
            return self._send(handler, 200, b'{"id": "x", "choices": [{"message": {"content": "unfinis')
        content, finish = content_for(behaviour, caption)
        prompt_tokens = len(json.dumps(body["messages"])) // 4
        completion_tokens = len(content) // 4 + 1
        reply = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
        }
        with self.lock:
            self.usage.append((prompt_tokens, completion_tokens))
        self._send(handler, 200, json.dumps(reply).encode())


@pytest.fixture
def chat_server():
    server = FakeChatServer()
    yield server
    server.stop()


@pytest.fixture
def api_key(monkeypatch) -> str:
    monkeypatch.setenv("CLOVER_TEST_KEY", SENTINEL_KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return SENTINEL_KEY


QUILT_COLUMNS = [
    "", "caption", "image_path", "subset", "split", "pathology", "roi_text", "noisy_text",
    "corrected_text", "med_umls_ids", "magnification", "height", "width",
]


def write_quilt_csv(path: Path, captions: list[str], **overrides) -> Path:
    """A Quilt-1M lookup CSV (same columns, Python list literals) with the given captions."""
    pathologies = ["['Breast']", "['Gastrointestinal', 'Dermatopathology']", "['Pulmonary']", "[]"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(QUILT_COLUMNS)
        for index, caption in enumerate(captions):
            row = {
                "": str(index),
                "caption": caption,
                "image_path": f"img_{index:04d}.jpg",
                "subset": ["quilt", "openpath", "pubmed"][index % 3],
                "split": "train" if index % 5 else "val",
                "pathology": pathologies[index % 4],
                "roi_text": "['nests of tumour cells', 'fibrous stroma']" if index % 2 else "[]",
                "noisy_text": "raw asr text",
                "corrected_text": f"corrected {caption}",
                "med_umls_ids": "['C0006826', 'C0007097']" if index % 2 else "['C0006826']",
                "magnification": str(index % 3),
                "height": "512",
                "width": "512",
            }
            row.update(overrides.get(index, {}))
            writer.writerow([row[column] for column in QUILT_COLUMNS])
    return path


@pytest.fixture
def quilt_csv(tmp_path):
    """Factory: ``quilt_csv(captions, name="lookup.csv", **row_overrides) -> Path``."""

    def make(captions: list[str], name: str = "quilt_1M_lookup.csv", **overrides) -> Path:
        return write_quilt_csv(tmp_path / name, captions, **{int(k): v for k, v in overrides.items()})

    return make
