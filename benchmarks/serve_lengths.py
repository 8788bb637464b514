"""Answers that end at different lengths: continuous batching against wave batching, same requests.

    python -m benchmarks.serve_lengths               # under a minute on 2 CPU cores

``benchmarks.serve_mixed`` gives both modes the same token work (every long answer runs to its
64 tokens, and yes/no questions never share a wave with them), so there continuous batching can
only win latency. Here every request has the same settings (greedy, ``max_tokens`` 64, no
``min_new_tokens``), and the language model ends its answers by itself, at lengths from a few
tokens to the 64-token cap, depending on the question. A wave is one ``generate`` call: its rows
that finish early sit idle until its longest answer is done, and the next requests wait for the
whole wave. Continuous batching frees a finished answer's row at once and starts a waiting request
in it. Measured, per round and paired: answers/s and tokens/s of the whole mix, the p50 latency of
all answers and of the shortest kind, the server's CPU time per answer; the answers must be
identical in both modes, and their token counts (from ``stream_options.include_usage``) are listed.
Then, in this process, what a row costs: a decoding step and a start-up per request at 1, 4 and
16 rows (``row_costs``), which is what decides the throughput figures.

The language model, trained for seconds, does not say all four answers as written (it cannot see
the image's caption, only random query embeddings): ``answer_tokens`` lists what it does say, per
question. The spread is what matters here, and it is the same in both modes.

Model and method as in ``benchmarks.serve_mixed`` (demo size, its language model pretrained for a
few seconds on these four answers, one intra-op thread, alternated rounds, medians of per-round
ratios). ``--wave-from COMMIT`` runs the wave server from that commit's tree.
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path
from typing import Any

from benchmarks.serve import WORK, Server, build_model, images
from benchmarks.serve_mixed import alternated_rounds, body, wave_server
from benchmarks.timing import emit, machine

CAP = 64
# Four questions trained to answers of different lengths (the shortest is the "short" kind).
ANSWERS = {
    "is the tissue dense": "no",
    "what stain is used": "hematoxylin and eosin",
    "what is the diagnosis": "a well differentiated adenocarcinoma with glands",
    "describe the image in detail": "glands lined by columnar epithelium with crowded nuclei and lymphocytes "
                                    "in the stroma, and necrosis in a lumen",
}
SHORTEST = "is the tissue dense"
STEPS = 800  # pretraining steps: after 40 (serve_mixed's), no answer reached 25 tokens


def questions(count: int, seed: int = 0) -> list[str]:
    """``count`` questions, each of the four a quarter of the time, in a fixed shuffled order."""
    out = [q for _ in range(count // len(ANSWERS) + 1) for q in ANSWERS][:count]
    random.Random(seed).shuffle(out)
    return out


def workload(urls: list[str], asked: list[str]) -> list[tuple[bool, bytes]]:
    return [(q == SHORTEST, body(urls[i % len(urls)], q, CAP, usage=True)) for i, q in enumerate(asked)]


def row_costs(model: Path, sizes: tuple[int, ...] = (1, 4, 16), repeats: int = 20) -> dict[str, dict[int, float]]:
    """In this process, one intra-op thread: the ms of a decoding step and of a start-up (image
    encoder, Q-Former, language-model prompt) per request, for batches of ``sizes`` rows. What a
    row costs decides what wave's idle rows waste and what continuous batching's smaller start-ups
    cost, so it explains the throughput ratio."""
    import time

    import torch

    from lavis.models import load_model_folder
    from lavis.models.llm.incremental import incremental_decoder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    loaded = load_model_folder(str(model)).eval()
    decoder = incremental_decoder(loaded.bridge)
    side = loaded.visual_encoder.image_size
    step_ms, start_ms = {}, {}
    try:
        with torch.no_grad():
            for n in sizes:
                samples = {"image": torch.randn(n, 3, side, side), "text_input": [SHORTEST] * n}
                began = time.perf_counter()
                for _ in range(repeats // 4):
                    rows, logits = decoder.start(loaded.prefix(samples, loaded.qformer_prompts(samples)),
                                                 loaded.prompts(samples))
                start_ms[n] = 1000 * (time.perf_counter() - began) / (repeats // 4) / n
                tokens = rows.pending if rows.pending is not None else logits.argmax(-1)
                decoder.step(rows, tokens)  # (the first step allocates)
                began = time.perf_counter()
                for _ in range(repeats):
                    decoder.step(rows, tokens)
                step_ms[n] = 1000 * (time.perf_counter() - began) / repeats
    finally:
        torch.set_num_threads(threads)
    return {"step_ms": step_ms, "start_ms_per_request": start_ms}


def run(clients: int, per_client: int, rounds: int, wave_from: str | None = None) -> dict[str, Any]:
    model = build_model(WORK / "lengths", ANSWERS, steps=STEPS)
    urls = images(16)
    extra = ["--generation", "num_beams=1", f"max_new_tokens={CAP}"]  # no min_new_tokens: answers end by themselves
    servers = {"continuous": Server(model, 16, CAP, 1, ["--batching", "continuous", *extra]),
               "wave": wave_server(model, CAP, extra, wave_from)}
    asked = questions(clients * per_client)
    requests = workload(urls, asked)
    runs = alternated_rounds(servers, requests, clients, rounds, workload(urls, questions(4, seed=1)),
                             lambda m: f"{m['answers_per_s']:.2f} answers/s, {m['tokens_per_s']:.0f} tokens/s, "
                                       f"shortest p50 {m['short_p50_ms']:.0f} ms", "serve_lengths")
    pairs = list(zip(runs["continuous"], runs["wave"]))
    keys = ("answers_per_s", "tokens_per_s", "all_p50_ms", "short_p50_ms", "server_cpu_ms_per_answer")
    summary = {mode: {key: statistics.median(m[key] for m in measured) for key in keys}
               for mode, measured in runs.items()}
    ratios = [c["answers_per_s"] / w["answers_per_s"] for c, w in pairs]
    tokens = runs["wave"][0]["tokens"]
    by_question: dict[str, list[int]] = {}
    for question, count in zip(asked, tokens):
        by_question.setdefault(question, []).append(count)
    return {
        "model": "demo size, LM pretrained on the four answers (lavis.apps.serve --model <converted folder>)",
        "wave_from": wave_from or "this tree",
        "clients": clients, "requests": len(requests), "max_tokens": CAP, "num_beams": 1, "rounds": rounds,
        **summary,
        "identical_answers": all(m["answers"] == runs["wave"][0]["answers"] for ms in runs.values() for m in ms),
        "answer_tokens": {"min": min(tokens), "median": statistics.median(tokens), "max": max(tokens),
                          "by_question_median": {q: statistics.median(c) for q, c in by_question.items()}},
        "serve_lengths_throughput_ratio": statistics.median(ratios),
        "throughput_ratios": sorted(round(x, 3) for x in ratios),
        "rounds_continuous_not_slower": sum(x >= 1 for x in ratios),
        "all_p50_speedup": statistics.median(w["all_p50_ms"] / c["all_p50_ms"] for c, w in pairs),
        "short_p50_speedup": statistics.median(w["short_p50_ms"] / c["short_p50_ms"] for c, w in pairs),
        "server_cpu_ratio": (summary["continuous"]["server_cpu_ms_per_answer"]
                             / summary["wave"]["server_cpu_ms_per_answer"]),
        "row_costs": row_costs(model),
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--wave-from", default=None, metavar="COMMIT", help="run the wave server from this commit")
    args = parser.parse_args(argv)
    emit(run(args.clients, args.requests_per_client, args.rounds, args.wave_from), args.out)


if __name__ == "__main__":
    main()
