"""Captioning evaluation (Quilt captions): BLEU-1..4, METEOR, ROUGE-L, CIDEr via pycocoevalcap.

Images with several reference captions are generated for once and scored against all of them.
SPICE is off by default: it needs Stanford CoreNLP models that pycocoevalcap downloads.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from lavis.datasets.bad_data import UNREADABLE_KEY
from lavis.models.llm.bridge import GenerationOptions
from lavis.tasks.base_task import BaseTask, register_task, write_eval_file


@dataclasses.dataclass
class CaptionTaskConfig:
    generation: GenerationOptions = dataclasses.field(default_factory=GenerationOptions)
    prompt: str = "Describe this pathology image."
    spice: bool = False


@register_task("captioning")
class CaptioningTask(BaseTask):
    Config = CaptionTaskConfig
    best_mode = "max"

    @torch.no_grad()
    def valid_step(self, model: torch.nn.Module, samples: dict[str, Any]) -> list[dict[str, Any]]:
        references = list(samples["text_input"])
        prompted = {**samples, "text_input": [self.cfg.prompt] * len(references)}
        captions = model.generate(prompted, **dataclasses.asdict(self.cfg.generation))
        image_ids = samples.get("image_id") or list(range(len(references)))
        return [
            {"image_id": image_id, "reference": ref, "prediction": pred}
            for image_id, ref, pred in zip(image_ids, references, captions)
        ]

    def unreadable_record(self, fields: dict[str, Any]) -> dict[str, Any]:
        """An unreadable image's caption: empty, still scored against its references."""
        return {"image_id": fields.get("image_id"), "reference": fields["text_input"], "prediction": ""}

    def after_evaluation(
        self, records: list[dict[str, Any]], split: str, epoch: int | str, output_dir: Path
    ) -> dict[str, float]:
        from lavis.metrics.captioning import score_captions

        references: dict[Any, list[str]] = {}
        predictions: dict[Any, str] = {}
        for r in records:
            key = r["image_id"]
            references.setdefault(key, []).append(r["reference"])
            predictions.setdefault(key, r["prediction"])
        scores = score_captions(references, predictions, spice=self.cfg.spice)
        scores["agg_metrics"] = scores["CIDEr"]
        rows = [json.dumps({"image_id": k, "caption": v}) for k, v in predictions.items()]
        write_eval_file(output_dir, split, epoch, "captions.jsonl", "\n".join(rows) + "\n")
        unreadable = sorted({r["image_id"] for r in records if r.get(UNREADABLE_KEY)}, key=str)
        coverage = {"num_captions_expected": len(records), "num_images_scored": len(predictions),
                    "unreadable_scored_empty": unreadable}  # image ids (run.unreadable_eval_images)
        write_eval_file(output_dir, split, epoch, "metrics.json", json.dumps({**scores, **coverage}, indent=2))
        return scores
