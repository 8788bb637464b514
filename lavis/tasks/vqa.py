"""VQA evaluation (QUILT-VQA, LLaVA-Med, PathVQA): generate, gather once per question, score.

Writes into the run folder, per evaluated split: ``<split>_<epoch>_answers.jsonl`` (LLaVA-Med
answer format: ``question_id, prompt, text, answer_id, model_id, metadata``), ``..._metrics.json``
(every protocol asked for, plus the generation settings) and ``..._metrics.md`` (a table).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import torch

from lavis.common.errors import DataError
from lavis.datasets.bad_data import UNREADABLE_KEY
from lavis.metrics.vqa_files import answer_record
from lavis.models.llm.bridge import GenerationOptions
from lavis.tasks.base_task import BaseTask, register_task, write_eval_file

_PERCENT_KEYS = ("open_recall", "open_precision", "open_f1", "exact_match", "bleu", "closed_accuracy")


@dataclasses.dataclass
class VQATaskConfig:
    generation: GenerationOptions = dataclasses.field(default_factory=GenerationOptions)
    # The first protocol is the headline (and what best-checkpoint selection uses).
    protocols: list[Literal["llava_med", "llava_med_initial", "quilt", "strict"]] = dataclasses.field(
        default_factory=lambda: ["llava_med", "strict"]
    )
    # "generate": closed questions answered by free generation, scored by the protocol's rule;
    # "rank": the model picks "yes" or "no" by likelihood (no generation quirks at all).
    closed_method: Literal["generate", "rank"] = "generate"
    model_id: str | None = None  # written into the answers file; default: "clover"


def selection_metric(summary: dict[str, Any]) -> float:
    """``agg_metrics``: mean of closed accuracy and open F1 (F1, because long answers inflate recall)."""
    parts = [summary[k] for k in ("closed_accuracy", "open_f1") if summary.get(k) is not None]
    return sum(parts) / len(parts) if parts else 0.0


@register_task("vqa")
class VQATask(BaseTask):
    Config = VQATaskConfig
    best_mode = "max"

    def eval_group_column(self) -> str | None:
        """Ranked closed questions get batches of their own, apart from the generated ones."""
        return "answer_type" if self.cfg.closed_method == "rank" else None

    @torch.no_grad()
    def valid_step(self, model: torch.nn.Module, samples: dict[str, Any]) -> list[dict[str, Any]]:
        n = len(samples["question_id"])
        types = samples.get("answer_type") or [None] * n
        generation = dataclasses.asdict(self.cfg.generation)
        closed = [i for i, t in enumerate(types) if t == "CLOSED"] if self.cfg.closed_method == "rank" else []
        if closed:
            # closed rows are ranked, so only the others are generated (none at all for an all-closed batch)
            answers: list[Any] = [None] * n
            for i, choice in zip(closed, model.rank_answers(_select(samples, closed), candidates=("yes", "no"))):
                answers[i] = choice
            others = [i for i, t in enumerate(types) if t != "CLOSED"]
            if others:
                for i, prediction in zip(others, model.predict_answers(_select(samples, others), **generation)):
                    answers[i] = prediction
        else:
            answers = list(model.predict_answers(samples, **generation))
        columns = {key: samples.get(key) or [None] * n for key in _FIELDS}
        return [eval_record({k: v[i] for k, v in columns.items()}, p) for i, p in enumerate(answers)]

    def unreadable_record(self, fields: dict[str, Any]) -> dict[str, Any]:
        """An unreadable image's question, answered with nothing: in the denominator, and wrong."""
        return eval_record(fields, "")

    def after_evaluation(
        self, records: list[dict[str, Any]], split: str, epoch: int | str, output_dir: Path
    ) -> dict[str, float]:
        from lavis.metrics.vqa import VQARecord, score

        counts = Counter(str(r["question_id"]) for r in records)
        if len(counts) != len(records):
            dupes = sorted(i for i, count in counts.items() if count > 1)[:10]
            raise DataError(f"{split}: question ids are not unique, e.g. {dupes}")
        truth = [
            VQARecord(
                question_id=r["question_id"],
                question=r["prompt"],
                answer=r["answer"] or "",
                answer_type=r["answer_type"] or "OPEN",
                yes_no_answer=r.get("yes_no_answer"),
            )
            for r in records
        ]
        predictions = {r["question_id"]: r["prediction"] for r in records}
        by_protocol = {}
        for name in self.cfg.protocols:
            summary, per_item = score(truth, predictions, name)
            # what the protocol's denominator holds (the published LLaVA-Med rule may leave some out)
            left_out = [row["question_id"] for row in per_item if not row.get("counted", True)]
            by_protocol[name] = {**summary, "num_scored": len(per_item) - len(left_out), "skipped_ids": left_out}
        headline = by_protocol[self.cfg.protocols[0]]
        self._write(output_dir, split, epoch, records, by_protocol)
        flat = {k: v for k, v in headline.items() if isinstance(v, (int, float))}
        flat["num_questions_expected"] = len(records)
        for name, summary in list(by_protocol.items())[1:]:
            flat.update({f"{name}/{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
        flat["agg_metrics"] = selection_metric(headline)
        return flat

    def _write(
        self, output_dir: Path, split: str, epoch: int | str, records: list[dict[str, Any]], by_protocol: dict[str, dict]
    ) -> None:
        model_id = self.cfg.model_id or "clover"
        lines = [
            json.dumps(answer_record(r["question_id"], r["prompt"], r["prediction"], model_id,
                                     {"answer_type": r["answer_type"], "image": r["image_path"]}))
            for r in records
        ]
        write_eval_file(output_dir, split, epoch, "answers.jsonl", "\n".join(lines) + "\n")
        headline = by_protocol[self.cfg.protocols[0]]
        unreadable = [{"question_id": r["question_id"], "image": r["image_path"], "reason": r[UNREADABLE_KEY]}
                      for r in records if r.get(UNREADABLE_KEY)]
        report = {
            # the runner hands over one record per question of the split (eval_coverage.py)
            "num_questions_expected": len(records),
            "num_scored": headline["num_scored"],
            "skipped_ids": headline["skipped_ids"],
            "unreadable_scored_empty": unreadable,  # run.unreadable_eval_images: empty_answer
            "protocols": by_protocol, "generation": dataclasses.asdict(self.cfg.generation),
            "closed_method": self.cfg.closed_method, "num_questions": len(records),
        }
        write_eval_file(output_dir, split, epoch, "metrics.json", json.dumps(report, indent=2))
        title = Path(f"{split}_{epoch}").name
        write_eval_file(output_dir, split, epoch, "metrics.md", markdown_table(title, by_protocol))


_FIELDS = ("question_id", "text_input", "answer", "answer_type", "yes_no_answer", "image_path")


def eval_record(fields: dict[str, Any], prediction: str) -> dict[str, Any]:
    """One evaluated question: its sample fields (a batch row or an unreadable item's) and the answer."""
    return {
        "question_id": fields["question_id"],
        "prompt": fields["text_input"],
        "prediction": prediction,
        "answer": fields.get("answer"),
        "answer_type": fields.get("answer_type"),
        "yes_no_answer": fields.get("yes_no_answer"),
        "image_path": fields.get("image_path"),
    }


def markdown_table(title: str, by_protocol: dict[str, dict[str, Any]]) -> str:
    keys = [k for k in _PERCENT_KEYS if any(s.get(k) is not None for s in by_protocol.values())]
    rows = [f"### {title}", "", "| protocol | " + " | ".join(keys) + " | open / closed |",
            "|---" * (len(keys) + 2) + "|"]
    for name, s in by_protocol.items():
        cells = ["-" if s.get(k) is None else f"{s[k]:.2f}" for k in keys]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {s.get('num_open', 0)} / {s.get('num_closed', 0)} |")
    return "\n".join(rows) + "\n"


def _select(samples: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    """The sub-batch of ``rows`` (tensors indexed, lists picked)."""
    index = torch.tensor(rows)
    out = {}
    for key, value in samples.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.index_select(0, index.to(value.device))
        elif isinstance(value, list):
            out[key] = [value[i] for i in rows]
        else:
            out[key] = value
    return out
