"""Does the demo's frozen LM understand question wordings it never saw? Three LMs of the demo's
size and steps (``lm`` in configs/demo/pipeline.yaml): the template-only corpus; the shipped one
(templates + the paraphrase grammar's training wordings, + folded conversations); the shipped
corpus with unigram tokenizer pieces (T5's kind) in place of the shipped BPE ones.

    python -m benchmarks.demo_lm_wordings [--steps N] [--out benchmarks/results_demo_lm_wordings.json]

All are pretrained the same way for the same steps (lavis/apps/demo/pretrain_lm.py), then
answer the validation split's questions with the tile's caption written first (the LM's own task,
as `lavis.apps.demo.diagnose`'s lm_with_caption), scored strict, separately for template wordings
and held-out (validation) wordings. Validation only: the test split decides nothing here.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from lavis.apps.demo.scoring import scored_rows, summarize_rows
from lavis.common.checkpoint import atomic_write_text
from lavis.common.jsonio import iter_json_lines, read_json
from lavis.common.paths import config_path
from lavis.datasets.demo.build import language_corpus, quilt_vqa_files
from lavis.instructions.templates import load_template_bank
from lavis.metrics.vqa import load_ground_truth


@torch.no_grad()
def answer_with_caption(lm_dir: Path, data: Path, batch_size: int = 64) -> dict[str, str]:
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    model = T5ForConditionalGeneration.from_pretrained(lm_dir).eval()
    with open(data / "quilt_1M_lookup.csv", newline="", encoding="utf-8") as handle:
        captions = {r["image_path"]: r["caption"] for r in csv.DictReader(handle)}
    questions = [r.value for r in iter_json_lines(data / quilt_vqa_files("val")[0])]
    out = {}
    for start in range(0, len(questions), batch_size):
        chunk = questions[start : start + batch_size]
        batch = tokenizer([f"{captions[q['image']]} {q['text']}" for q in chunk], return_tensors="pt", padding=True)
        ids = model.generate(**batch, max_new_tokens=24, num_beams=1)
        out.update({str(q["question_id"]): t for q, t in zip(chunk, tokenizer.batch_decode(ids, skip_special_tokens=True))})
    return out


def score_by_wording(data: Path, predictions: dict[str, str]) -> dict[str, Any]:
    kinds, attributes = read_json(data / "question_wordings.json"), read_json(data / "question_attributes.json")
    truth = load_ground_truth(data / quilt_vqa_files("val")[1])
    tiles = {r.value["question_id"]: r.value["image"] for r in iter_json_lines(data / quilt_vqa_files("val")[0])}
    out = {}
    for kind in ("template", "heldout"):
        chosen = [t for t in truth if kinds[str(t.question_id)] == kind and attributes.get(str(t.question_id))]
        ids = {str(t.question_id) for t in chosen}
        rows = scored_rows(chosen, {k: v for k, v in predictions.items() if k in ids}, tiles, attributes)
        out[kind] = {k: v for k, v in summarize_rows(rows).items() if not k.endswith("ci95")}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="LM pretraining steps (default: the demo's)")
    parser.add_argument("--work", default="runs/bench_lm_wordings", help="scratch folder")
    parser.add_argument("--out", default="benchmarks/results_demo_lm_wordings.json")
    args = parser.parse_args(argv)
    from lavis.apps.demo.pipeline import Pipeline, load_settings
    from lavis.apps.demo.pretrain_lm import pretrain_lm

    settings = load_settings("demo/pipeline.yaml", [f"out_dir={args.work}"])
    lm, steps, work = settings.lm, args.steps or settings.lm.steps, Path(args.work)
    Pipeline(settings).build_data()  # as make demo builds it (its stage-2 conversation contract included)
    bank = load_template_bank(config_path("demo/templates.yaml"))
    tiles = [SimpleNamespace(labels=t["labels"], source=t["source"])
             for t in read_json(work / "data" / "demo_data.json")["labels"] if t["split"] == "train"]
    shipped = [r.value for r in iter_json_lines(work / "data" / "language_corpus.jsonl")]
    variants = {"templates_only": (language_corpus(tiles, bank), lm.pieces), "shipped": (shipped, lm.pieces),
                "shipped_unigram_pieces": (shipped, "unigram")}
    result: dict[str, Any] = {"steps": steps, "layers": lm.num_layers, "d_model": lm.d_model, "split": "val",
                              "protocol": "strict", "date": time.strftime("%Y-%m-%d")}
    for name, (corpus, pieces) in variants.items():
        stats = pretrain_lm(corpus, work / name, lm.d_model, lm.d_ff, lm.num_layers, lm.num_heads, lm.vocab_size,
                            steps, lm.batch_size, lm.lr, seed=0, pieces=pieces)
        result[name] = {"corpus_examples": stats["examples"], "loss_last": round(stats["loss_last"], 3),
                        "train_seconds": round(stats["seconds"]),
                        **score_by_wording(work / "data", answer_with_caption(work / name, work / "data"))}
    atomic_write_text(Path(args.out), json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
