"""Short questions among long answers: continuous batching against wave batching, same requests.

    python -m benchmarks.serve_mixed                 # about a minute on 2 CPU cores

16 clients stream their requests (``"stream": true``): half ask yes/no questions answered in 2
tokens, half open questions answered in 64 tokens (``max_tokens`` 2 and 64; the server's
``min_new_tokens`` is 64, so every answer is exactly as long as it may be and both servers do the
same token work). With ``--batching wave`` (the previous default) a batch is one ``generate``
call that runs until its longest answer is done, and requests with other settings wait for it;
with ``--batching continuous`` a request joins the running batch at the next decoding step and
leaves when done. Measured: the p50 latency of the short requests, the answers/s of the whole
mix, the time to the first streamed token of the long answers (wave sends the answer whole at the
end, so its first token is its last), and the server process's CPU time per answer (the work
each mode needs, whatever else loads the machine).

``--wave-from COMMIT``: the wave server runs from that commit's source tree (``git archive``
into ``benchmarks/_work``), e.g. the wave batching an issue was measured against, while the
continuous server runs from this tree. ``--every-token``: a third server, continuous batching
sending every token as it is decided (``--stream-interval-ms 0``; the default sends the text at
most every 20 ms), measured in the same rounds.

The model has the demo's size (as ``benchmarks.serve``: random vision encoder and Q-Former), its
language model pretrained for a few seconds on the two questions' answers so that it answers with
words (a random one emits padding, which streams no text); the server runs in its own process with
one intra-op thread; greedy decoding (``num_beams=1``: what streams token by token; beam search sends
the prefix its beams agree on). Both servers run side by side and are measured in alternating
order, round by round; ratios are medians of per-round ratios, each round's listed too (9 rounds:
single rounds vary by 10-20% on a shared machine). Answers must be identical in both.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.serve import WORK, Server, build_model, images
from benchmarks.timing import REPO, emit, machine, run_clients

SHORT, LONG = 2, 64
YES_NO, OPEN = "is the tissue dense", "describe the image in detail"
ANSWERS = {YES_NO: "no", OPEN: "glands lined by columnar epithelium with crowded nuclei and lymphocytes in the stroma"}


def stream(server: Server, body: bytes) -> tuple[str, float, float, int | None]:
    """(answer, seconds to the first content, seconds to [DONE], its tokens) of one streamed
    request; the tokens when the body asks for ``stream_options.include_usage``, else None."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    first, text, tokens = None, [], None
    try:
        connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"request failed ({response.status}): {response.read()[:300]!r}")
        while True:
            line = response.readline().decode().strip()
            if not line.startswith("data: "):
                if not line and response.isclosed():
                    break
                continue
            if line == "data: [DONE]":
                break
            chunk = json.loads(line[6:])
            tokens = (chunk.get("usage") or {}).get("completion_tokens", tokens)
            for choice in chunk.get("choices", []):
                piece = choice.get("delta", {}).get("content")
                if piece:
                    first = first if first is not None else time.perf_counter() - start
                    text.append(piece)
    finally:
        connection.close()
    done = time.perf_counter() - start
    return "".join(text), first if first is not None else done, done, tokens


def body(url: str, question: str, max_tokens: int, usage: bool = False) -> bytes:
    content = [{"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": url}}]
    request = {"model": "bench", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
               "stream": True}
    if usage:
        request["stream_options"] = {"include_usage": True}
    return json.dumps(request).encode()


def workload(urls: list[str], clients: int, per_client: int) -> list[tuple[bool, bytes]]:
    """Request i goes to client i % clients; even clients ask short questions, odd ones long."""
    out = []
    for i in range(clients * per_client):
        short = (i % clients) % 2 == 0
        question = YES_NO if short else OPEN
        out.append((short, body(urls[i % len(urls)], question, SHORT if short else LONG)))
    return out


def load(server: Server, requests: list[tuple[bool, bytes]], clients: int) -> dict[str, Any]:
    """One round: every client streams its requests in turn. ``requests``: (short?, body)."""
    results: list[tuple[str, float, float, int | None] | None] = [None] * len(requests)

    def client(offset: int) -> None:
        for i in range(offset, len(requests), clients):
            results[i] = stream(server, requests[i][1])

    cpu, idle = server.cpu_seconds(), server.get("/health").get("generation_idle_s")  # (an older tree: none)
    wall = run_clients(clients, client)
    cpu = server.cpu_seconds() - cpu
    tokens = [r[3] for r in results]
    idle = None if idle is None else server.get("/health")["generation_idle_s"] - idle
    short = [r[2] for (is_short, _), r in zip(requests, results) if is_short]
    long_ttft = [r[1] for (is_short, _), r in zip(requests, results) if not is_short]
    long_total = [r[2] for (is_short, _), r in zip(requests, results) if not is_short]
    return {"answers_per_s": len(requests) / wall, "wall_s": round(wall, 3),
            "server_cpu_ms_per_answer": 1000 * cpu / len(requests),
            # of the round's wall time, the generation thread waiting for requests (or for company)
            "generation_idle_share": None if idle is None else idle / wall,
            "short_p50_ms": 1000 * statistics.median(short), "long_p50_ms": 1000 * statistics.median(long_total),
            "long_ttft_p50_ms": 1000 * statistics.median(long_ttft),
            "all_p50_ms": 1000 * statistics.median(r[2] for r in results),
            "tokens_per_s": None if None in tokens else sum(tokens) / wall,  # (bodies asking for usage)
            "answers": [r[0] for r in results], "tokens": tokens}


def wave_server(model: Path, new_tokens: int, extra: list[str], wave_from: str | None) -> Server:
    """The wave-batching server of this tree, or of commit ``wave_from`` (same weights)."""
    if wave_from:  # a tree from before continuous batching has no --batching: waves were all it did
        return Server(model_for_older(model), 16, new_tokens, 1, extra, source=source_at(wave_from))
    return Server(model, 16, new_tokens, 1, ["--batching", "wave", *extra])


def alternated_rounds(servers: dict[str, Server], requests: list[tuple[bool, bytes]], clients: int, rounds: int,
                      warm_up: list[tuple[bool, bytes]], line: Callable[[dict[str, Any]], str],
                      name: str) -> dict[str, list[dict[str, Any]]]:
    """Each server's ``load`` of ``requests``, round by round, in alternating order (after a warm-up
    with ``warm_up``: first calls allocate); ``line(measured)`` is printed for each. The servers are
    closed at the end."""
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in servers}
    try:
        for server in servers.values():
            load(server, warm_up, 4)
        for r in range(rounds):
            for mode in (list(servers) if r % 2 == 0 else list(servers)[::-1]):
                runs[mode].append(load(servers[mode], requests, clients))
                print(f"[{name}] round {r + 1} {mode}: {line(runs[mode][-1])}", file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.close()
    return runs


def source_at(commit: str) -> Path:
    """This repository's tree at ``commit``, unpacked under benchmarks/_work (once)."""
    folder = WORK.parent / f"source_{commit}"
    if not folder.is_dir():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive.stdout, check=True)
        partial.rename(folder)
    return folder


# model config keys added since issue 26 was filed (580eb47); here they hold their defaults
NEWER_KEYS = {"model": ("compile", "compile_mode", "conversation"), "llm": ("bos_token", "config_overrides")}


def model_for_older(model: Path) -> Path:
    """A copy of the model folder that an older tree loads: the same weights, its config without
    ``NEWER_KEYS`` (which an older config schema refuses)."""
    import yaml

    folder = model.with_name(model.name + "_older")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(model, folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    for key in NEWER_KEYS["model"]:
        config["model"].pop(key, None)
    for key in NEWER_KEYS["llm"]:
        config["model"]["llm"].pop(key, None)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def run(clients: int, per_client: int, rounds: int, wave_from: str | None = None,
        every_token: bool = False) -> dict[str, Any]:
    model = build_model(WORK / "talking", ANSWERS)
    urls = images(16)
    extra = ["--generation", "num_beams=1", f"max_new_tokens={LONG}", f"min_new_tokens={LONG}"]
    servers = {"continuous": Server(model, 16, LONG, 1, ["--batching", "continuous", *extra])}
    if every_token:
        servers["continuous_every_token"] = Server(model, 16, LONG, 1, ["--batching", "continuous", *extra,
                                                                        "--stream-interval-ms", "0"])
    servers["wave"] = wave_server(model, LONG, extra, wave_from)
    requests = workload(urls, clients, per_client)
    runs = alternated_rounds(servers, requests, clients, rounds, workload(urls, 4, 1),
                             lambda m: f"short p50 {m['short_p50_ms']:.0f} ms, {m['answers_per_s']:.2f} answers/s, "
                                       f"first token {m['long_ttft_p50_ms']:.0f} ms", "serve_mixed")
    pairs = list(zip(runs["continuous"], runs["wave"]))
    keys = ("answers_per_s", "short_p50_ms", "long_p50_ms", "long_ttft_p50_ms", "server_cpu_ms_per_answer",
            "generation_idle_share")
    summary = {mode: {key: statistics.median(m[key] for m in measured) if measured[0][key] is not None else None
                      for key in keys}
               for mode, measured in runs.items()}
    speedups = [w["short_p50_ms"] / c["short_p50_ms"] for c, w in pairs]
    ratios = [c["answers_per_s"] / w["answers_per_s"] for c, w in pairs]
    result = {
        "model": "demo size, LM pretrained on the two answers (lavis.apps.serve --model <converted folder>)",
        "wave_from": wave_from or "this tree",
        "clients": clients, "requests": len(requests), "short_tokens": SHORT, "long_tokens": LONG, "num_beams": 1,
        "rounds": rounds, **summary,
        "identical_answers": all(m["answers"] == runs["wave"][0]["answers"] for ms in runs.values() for m in ms),
        "serve_mixed_short_p50_speedup": statistics.median(speedups),
        "throughput_ratio": statistics.median(ratios),
        # per round, sorted: the spread of the paired ratios (wave's rounds are bimodal: whether a
        # round's first wave holds the short questions or the long answers changes its pace)
        "short_p50_speedups": sorted(round(x, 3) for x in speedups),
        "throughput_ratios": sorted(round(x, 3) for x in ratios),
        "rounds_continuous_not_slower": sum(x >= 1 for x in ratios),
        "server_cpu_ratio": (summary["continuous"]["server_cpu_ms_per_answer"]
                             / summary["wave"]["server_cpu_ms_per_answer"]),
        "serve_ttft_ms_p50": summary["continuous"]["long_ttft_p50_ms"],
        "machine": machine(),
    }
    if every_token:  # the same continuous server sending each token as it is decided, paired round by round
        tokens = runs["continuous_every_token"]
        result["every_token"] = {
            "throughput_vs_default": statistics.median(t["answers_per_s"] / c["answers_per_s"]
                                                       for t, c in zip(tokens, runs["continuous"])),
            "throughput_ratio": statistics.median(t["answers_per_s"] / w["answers_per_s"]
                                                  for t, w in zip(tokens, runs["wave"])),
            "short_p50_speedup": statistics.median(w["short_p50_ms"] / t["short_p50_ms"]
                                                   for t, w in zip(tokens, runs["wave"])),
        }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--wave-from", default=None, metavar="COMMIT", help="run the wave server from this commit")
    parser.add_argument("--every-token", action="store_true",
                        help="also a continuous server that sends every token (--stream-interval-ms 0), paired")
    args = parser.parse_args(argv)
    emit(run(args.clients, args.requests_per_client, args.rounds, args.wave_from, args.every_token), args.out)


if __name__ == "__main__":
    main()
