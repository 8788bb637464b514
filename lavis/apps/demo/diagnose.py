"""Where does the demo model lose an attribute? Measurements on the validation split of a demo run.

    python -m lavis.apps.demo.diagnose --run runs/demo [--out runs/demo/diagnosis.json]

- ``encoder_probe``: a linear probe (logistic regression) on the frozen image encoder's features,
  trained on the training tiles and scored on the validation tiles, per attribute: what the
  frozen encoder makes linearly readable. ``encoder_probe_random`` is the same encoder with random
  weights (what the pixels give without pretraining).
- ``qformer_probe``: the same probe on what the language model is given, the stage-2 model's
  projected query outputs for the attribute's first open question: whether the Q-Former passes on
  what the encoder holds.
- ``lm_with_caption``: the frozen language model answering the validation questions with the
  tile's caption written before the question (its pretraining task): whether it can answer at
  all once it is told what the image shows.

Compare them with the full model's validation scores in ``report.json`` (``validation``): an
attribute the encoder probe reads but the Q-Former probe does not is lost in the Q-Former; one both
read but the model misses is lost in the LM; one the encoder probe cannot read is lost in the
encoder or in the labels.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from lavis.apps.demo.report import asked_attributes
from lavis.apps.demo.scoring import by_attribute, scored_rows
from lavis.common.checkpoint import atomic_write_text
from lavis.common.jsonio import read_json
from lavis.datasets.demo.build import ATTRIBUTES, quilt_vqa_files
from lavis.metrics.vqa import load_ground_truth


def tile_labels(run: Path) -> list[dict[str, Any]]:
    return read_json(run / "data" / "demo_data.json")["labels"]


@torch.no_grad()
def encoder_features(run: Path, tiles: list[dict[str, Any]], encoder_cfg: dict[str, Any], weights: str | None
                     ) -> torch.Tensor:
    """(N, 2 * width): class token and mean patch token of the frozen encoder, eval transform."""
    from lavis.models.vision.base import VISION_ENCODERS
    from lavis.processors.base_processor import build_processor

    cls = VISION_ENCODERS.get(encoder_cfg["name"])
    torch.manual_seed(0)
    encoder = cls.from_config(cls.parse_config({**encoder_cfg, "freeze": True, "pretrained": weights,
                                                "precision": "fp32"})).eval()
    transform = build_processor({"name": "pathology_image_eval", "image_size": encoder_cfg["image_size"]}, "probe")
    out = []
    for start in range(0, len(tiles), 128):
        batch = torch.stack([transform(Image.open(run / "data" / "images" / t["image"]).convert("RGB"))
                             for t in tiles[start : start + 128]])
        tokens = encoder(batch)
        out.append(torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], dim=1))
    return torch.cat(out)


def linear_probe(train_x: torch.Tensor, train_y: list[str], val_x: torch.Tensor, val_y: list[str],
                 steps: int = 300, weight_decay: float = 1e-3) -> dict[str, Any]:
    """Logistic regression (full batch, Adam) on standardised features; accuracy and balanced accuracy."""
    classes = sorted(set(train_y))
    if len(classes) < 2 or not val_y:
        return {"n_train": len(train_y), "n_val": len(val_y), "accuracy": None, "balanced_accuracy": None}
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    xs, xv = (train_x - mean) / std, (val_x - mean) / std
    ys = torch.tensor([classes.index(y) for y in train_y])
    torch.manual_seed(0)
    head = torch.nn.Linear(xs.shape[1], len(classes))
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05, weight_decay=weight_decay)
    # class weights: a rare label counts as much as a common one
    weights = len(ys) / (len(classes) * torch.bincount(ys, minlength=len(classes)).clamp(min=1).float())
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(head(xs), ys, weight=weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = [classes[i] for i in head(xv).argmax(1).tolist()]
    hits = [p == y for p, y in zip(predicted, val_y)]
    per_class = [sum(h for h, y in zip(hits, val_y) if y == c) / max(1, val_y.count(c)) for c in set(val_y)]
    return {"n_train": len(train_y), "n_val": len(val_y), "accuracy": round(100 * sum(hits) / len(hits), 1),
            "balanced_accuracy": round(100 * sum(per_class) / len(per_class), 1)}


def encoder_probe(run: Path, weights: str | None) -> dict[str, Any]:
    config = read_json(run / "pretrained" / "vision.json")
    tiles = [t for t in tile_labels(run) if t["split"] in ("train", "val")]
    features = encoder_features(run, tiles, config["encoder"], weights)
    row = {t["image"]: i for i, t in enumerate(tiles)}
    return probe_attributes(tiles, lambda _, labelled: features[[row[t["image"]] for t in labelled]])


def probe_attributes(tiles: list[dict[str, Any]], features: Any) -> dict[str, Any]:
    """Linear probe per attribute, training tiles -> validation tiles; ``features(attribute, tiles)``
    gives the (N, F) features of the tiles labelled with it."""
    out = {}
    for attribute in ATTRIBUTES:
        labelled = [t for t in tiles if attribute in t["labels"]]
        train = [i for i, t in enumerate(labelled) if t["split"] == "train"]
        val = [i for i, t in enumerate(labelled) if t["split"] == "val"]
        if not train or not val:
            continue  # not asked in this run
        x = features(attribute, labelled)
        out[attribute] = linear_probe(x[train], [labelled[i]["labels"][attribute] for i in train],
                                      x[val], [labelled[i]["labels"][attribute] for i in val])
    return out


def qformer_probe(run: Path) -> dict[str, Any]:
    """The probe on the stage-2 model's LM prefix (projected query outputs, flattened)."""
    from lavis.common.paths import config_path
    from lavis.instructions.templates import load_template_bank
    from lavis.models import load_pretrained

    loaded = load_pretrained(str(run / "stage2"), "cpu", "fp32")
    model, transform = loaded.model.eval(), loaded.vis_processor
    bank = load_template_bank(config_path("demo/templates.yaml"))

    @torch.no_grad()
    def prefix(attribute: str, tiles: list[dict[str, Any]]) -> torch.Tensor:
        question = bank.attributes[attribute].open.questions[0]
        out = []
        for start in range(0, len(tiles), 128):
            chunk = tiles[start : start + 128]
            images = torch.stack([transform(Image.open(run / "data" / "images" / t["image"]).convert("RGB"))
                                  for t in chunk])
            out.append(model.prefix({"image": images}, [question] * len(chunk)).flatten(1))
        return torch.cat(out)

    return probe_attributes([t for t in tile_labels(run) if t["split"] in ("train", "val")], prefix)


@torch.no_grad()
def lm_with_caption(run: Path, batch_size: int = 64) -> dict[str, Any]:
    """The frozen LM answering each validation question after the tile's caption (greedy)."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    folder = run / "pretrained" / "t5"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = T5ForConditionalGeneration.from_pretrained(folder).eval()
    with open(run / "data" / "quilt_1M_lookup.csv", newline="", encoding="utf-8") as handle:
        captions = {r["image_path"]: r["caption"] for r in csv.DictReader(handle)}
    questions_file, answers_file = quilt_vqa_files("val")
    questions = [json.loads(line) for line in (run / "data" / questions_file).read_text().splitlines()]
    predictions = {}
    for start in range(0, len(questions), batch_size):
        chunk = questions[start : start + batch_size]
        batch = tokenizer([f"{captions[q['image']]} {q['text']}" for q in chunk], return_tensors="pt", padding=True)
        ids = model.generate(**batch, max_new_tokens=24, num_beams=1)
        predictions.update({str(q["question_id"]): text for q, text in
                            zip(chunk, tokenizer.batch_decode(ids, skip_special_tokens=True))})
    truth = load_ground_truth(run / "data" / answers_file)
    attributes = read_json(run / "data" / "question_attributes.json")
    rows = scored_rows(truth, predictions, {str(q["question_id"]): q["image"] for q in questions}, attributes)
    return {name: {k: v[k] for k in ("closed_accuracy", "open_recall", "num_closed", "num_open")}
            for name, v in by_attribute(rows, asked_attributes(attributes)).items()}


def diagnose(run: Path) -> dict[str, Any]:
    return {
        "encoder_probe": encoder_probe(run, str(run / "pretrained" / "vision.safetensors")),
        "encoder_probe_random": encoder_probe(run, None),
        "qformer_probe": qformer_probe(run),
        "lm_with_caption": lm_with_caption(run),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo", help="a finished demo run folder")
    parser.add_argument("--out", default=None, help="where to write the JSON (default <run>/diagnosis.json)")
    args = parser.parse_args(argv)
    run = Path(args.run)
    if not (run / "pretrained" / "vision.json").exists():
        print(f"error: {run} is not a finished demo run (no pretrained/vision.json)", file=sys.stderr)
        return 2
    result = diagnose(run)
    atomic_write_text(Path(args.out or run / "diagnosis.json"), json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
