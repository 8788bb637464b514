"""``make smoke-full``: the full-size CLOVER model (``blip2_t5_instruct/flant5xl``: EVA ViT-g,
12-layer Q-Former, FlanT5-XL) with random weights, on CPU, through the real code paths: one
stage-2 step from images, one from cached features (the feature cache built first), and one
beam-search generation with CLOVER's settings. Any error fails it; seconds and peak resident
memory go to benchmarks/results_smoke.json and RESULTS.md.

    python -m benchmarks.smoke_full            # about 3-5 minutes, ~12 GiB of memory

Nothing is downloaded: the model type's own YAML is used with its weight sources switched off,
FlanT5-XL's architecture is written out below, the tokenizers are made on the spot (WordPiece
vocabulary, sentencepiece). On CPU the frozen ViT runs in bf16 where the CPU has bf16
instructions, else fp32 (never fp16: see ``lavis.models.vision.common.cpu_dtype``); the LLM in
bf16 as configured; the step under bf16 autocast, as the stage-2 configs run.
"""

from __future__ import annotations

import json
import math
import resource
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.data_files import write_frames
from benchmarks.sizes import make_assets
from benchmarks.timing import machine
from benchmarks.train_step import WORK

HERE = Path(__file__).resolve().parent
TRAINABLE = 187_259_648  # InstructBLIP FlanT5-XL's trainable set (the paper's ~187M)


def flan_t5_xl_config() -> Any:
    """google/flan-t5-xl's architecture (its config.json values), for a random-weight build."""
    from transformers import T5Config

    return T5Config(vocab_size=32128, d_model=2048, d_kv=64, d_ff=5120, num_layers=24, num_decoder_layers=24,
                    num_heads=32, feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=0,
                    eos_token_id=1, decoder_start_token_id=0)


def build_model(assets: Any, model_type: str) -> torch.nn.Module:
    """``blip2_t5_instruct/<model_type>`` from its YAML with random weights (``tiny``: the tests)."""
    import lavis  # noqa: F401
    from benchmarks.sizes import SIZES, lm_config
    from lavis.models import MODELS, model_config

    overrides = {"checkpoint": None, "vision": {"pretrained": None},
                 "qformer": {"pretrained": None, "tokenizer": str(assets.qformer_tokenizer)},
                 "llm": {"name_or_path": str(assets.t5_tokenizer)}}
    cfg = model_config("blip2_t5_instruct", model_type, overrides)
    architecture = flan_t5_xl_config() if model_type == "flant5xl" else lm_config(SIZES["tiny"].lm)
    return MODELS.get("blip2_t5_instruct").from_config(cfg, load_weights=False, llm_config=architecture)


def run_config(root: Path, out: Path, name: str, feature_cache: str, model_type: str, image_size: int) -> Any:
    from lavis.cli import build_parser, load

    processor = {"name": "pathology_image_eval", "image_size": image_size}
    cfg = {
        "model": {"arch": "blip2_t5_instruct", "model_type": model_type},
        "datasets": {"clover_instructions": {"storage": str(root), "vis_processor": {
            "train": processor, "eval": processor}}},
        "run": {"task": "instruction_tuning", "output_dir": str(out / name), "device": "cpu", "precision": "bf16",
                "batch_size_train": 1, "batch_size_eval": 1, "num_workers": 0, "progress_bar": False,
                "feature_cache": feature_cache, "feature_cache_dir": str(out / "cache"), "init_lr": 1e-5},
    }
    path = out / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return load(build_parser("smoke", None).parse_args(["--cfg-path", str(path)]))


def one_step(cfg: Any, model: torch.nn.Module) -> dict[str, Any]:
    """Build a RunnerEpoch (feature cache included) and take one optimizer step."""
    from lavis.runners import RUNNERS
    from lavis.tasks import TASKS

    start = time.perf_counter()
    task = TASKS.get(cfg.run.task)(cfg.task)
    runner = RUNNERS.get("runner_epoch")(cfg, task, model, task.build_datasets(cfg))
    built = time.perf_counter() - start
    runner.build_train_loader()
    runner.setup_training(total_steps=1)
    batch = next(iter(runner.train_loader))
    start = time.perf_counter()
    assert runner.micro_step(batch, runner.batches_per_epoch()), "no optimizer step was taken"
    step = time.perf_counter() - start
    loss = runner.step.means.read()["loss"]  # the mean loss of that step, read from the device
    if not math.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss}")
    keys = sorted(k for k in batch if not k.startswith("_"))
    del runner  # its optimizer state goes before the next phase
    return {"runner_setup_s": built, "step_s": step, "loss": loss, "batch_keys": keys}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


def run(model_type: str = "flant5xl", threads: int = 1) -> dict[str, Any]:
    torch.set_num_threads(threads)  # one by default: a shared CPU makes OpenMP threads spin
    out = WORK / f"smoke_{model_type}"
    assets = make_assets(WORK / "assets")
    frame = write_frames(out / "data" / "quilt_1m", [(1280, 720)], 1)[0]
    record = {"question": "describe the architecture of this biopsy", "image": frame.name, "caption_id": 0,
              "answer": "sheets of atypical cells with vesicular chromatin and prominent nucleoli", "source": "generated"}
    (out / "data" / "instructions.jsonl").write_text(json.dumps(record) + "\n")
    phases: dict[str, Any] = {}
    start = time.perf_counter()
    torch.manual_seed(0)
    model = build_model(assets, model_type).to("cpu")
    image_size = model.visual_encoder.image_size
    trainable = model.num_parameters(trainable=True)
    if model_type == "flant5xl" and trainable != TRAINABLE:
        raise RuntimeError(f"{trainable:,} trainable parameters, expected {TRAINABLE:,}")
    phases["build"] = {"seconds": time.perf_counter() - start, "peak_rss_gib": peak_rss_gib(),
                       "vision_dtype": str(model.visual_encoder.dtype), "llm_dtype": str(model.llm.dtype)}
    for name, mode in (("step_from_images", "off"), ("step_from_cached_features", "on")):
        if mode == "on" and (out / "cache").exists():
            import shutil

            shutil.rmtree(out / "cache")  # the cache build is part of this phase
        start = time.perf_counter()
        result = one_step(run_config(out / "data", out, name, mode, model_type, image_size), model)
        expected = "image_embeds" if mode == "on" else "image"
        if expected not in result["batch_keys"]:
            raise RuntimeError(f"{name}: the batch has no '{expected}' ({result['batch_keys']})")
        phases[name] = {**result, "seconds": time.perf_counter() - start, "peak_rss_gib": peak_rss_gib()}
    model.eval()
    from lavis.processors.image_processors import PathologyImageEval

    processor = PathologyImageEval.from_config({"name": "pathology_image_eval", "image_size": image_size})
    from lavis.datasets.image_io import load_image

    image = processor(load_image(frame, draft=processor.decode_size()))[None]
    settings = {"num_beams": 5, "max_new_tokens": 40, "min_new_tokens": 5}  # CLOVER's evaluation
    start = time.perf_counter()
    with torch.no_grad(), model.autocast(torch.bfloat16):
        samples = {"image": image, "text_input": [record["question"]]}
        prompts = model.prompts(samples)
        from lavis.models.llm.bridge import GenerationOptions

        ids = model.bridge.generate_ids(model.prefix(samples, prompts), prompts, GenerationOptions(**settings))
    if not 5 <= ids.shape[1] - 1 <= 40:
        raise RuntimeError(f"generated {ids.shape[1] - 1} tokens, outside CLOVER's 5-40")
    phases["generate"] = {"seconds": time.perf_counter() - start, "peak_rss_gib": peak_rss_gib(),
                          "new_tokens": int(ids.shape[1] - 1), **settings}
    return {"model": f"blip2_t5_instruct/{model_type} (random weights)", "trainable_params": trainable,
            "threads": torch.get_num_threads(), "machine": machine(), "phases": phases,
            "total_s": sum(p["seconds"] for p in phases.values()), "peak_rss_gib": peak_rss_gib()}


def main(argv: list[str] | None = None) -> None:
    import argparse

    from benchmarks.report import write_report

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: safe on a shared machine)")
    args = parser.parse_args(argv)
    result = run(threads=args.threads)
    (HERE / "results_smoke.json").write_text(json.dumps(result, indent=1) + "\n")
    results = HERE / "results.json"
    write_report(json.loads(results.read_text()) if results.exists() else {})
    print(json.dumps({k: result[k] for k in ("total_s", "peak_rss_gib")}
                     | {name: round(p["seconds"], 1) for name, p in result["phases"].items()}, indent=1))


if __name__ == "__main__":
    main()
