"""The demo's report: ``report.json`` (the figures), ``report.md`` (table, loss curves, samples)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lavis.common.checkpoint import atomic_write_text
from lavis.common.jsonio import iter_json_lines, read_json

EVAL_STEM = "quilt_vqa_test_eval"  # <dataset>_<split>_<epoch label> as the VQA task names files


def _metrics(eval_dir: Path) -> dict[str, dict[str, Any]]:
    return read_json(eval_dir / f"{EVAL_STEM}_metrics.json")["protocols"]


def _answers(eval_dir: Path) -> dict[str, dict[str, Any]]:
    rows = (record.value for record in iter_json_lines(eval_dir / f"{EVAL_STEM}_answers.jsonl"))
    return {str(r["question_id"]): r for r in rows}


def _train_losses(run_dir: Path) -> list[tuple[int, float]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [record.value for record in iter_json_lines(path)]
    return [(r["step"], r["loss"]) for r in rows if r["type"] == "train" and "loss" in r]


def plot_losses(out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for axis, stage, title in zip(axes, ("stage1", "stage2"), ("stage 1: ITC + ITM + ITG", "stage 2: answer tokens")):
        points = _train_losses(out / stage)
        if points:
            axis.plot([s for s, _ in points], [v for _, v in points], marker=".")
        axis.set_title(title)
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("loss")
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=110)
    plt.close(fig)
    return "loss_curves.png"


def plot_samples(out: Path, seeing: dict, blind: dict, truth: dict, labels: dict[str, dict], count: int = 6
                 ) -> tuple[str, list[dict]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    # Prefer tiles that show tissue, and a spread of questions of both kinds.
    def shows_tissue(qid: str) -> bool:
        return labels.get(seeing[qid]["metadata"]["image"], {}).get("tissue_fraction") != "low"

    ids = [i for i in sorted(seeing) if shows_tissue(i)] or sorted(seeing)
    closed = [i for i in ids if truth[i]["answer_type"] == "CLOSED"]
    open_ = [i for i in ids if truth[i]["answer_type"] == "OPEN"]
    picked = _spread(closed, count // 2) + _spread(open_, count - count // 2)
    rows = []
    fig, axes = plt.subplots(1, len(picked), figsize=(3.2 * len(picked), 4.6), squeeze=False)
    for axis, qid in zip(axes[0], picked):
        image = seeing[qid]["metadata"]["image"]
        axis.imshow(Image.open(out / "data" / "images" / image))
        axis.axis("off")
        row = {"question_id": qid, "image": image, "question": seeing[qid]["prompt"],
               "reference": truth[qid]["answer"], "answer": seeing[qid]["text"], "blind_answer": blind[qid]["text"]}
        rows.append(row)
        axis.set_title("\n".join([_wrap(row["question"]), f"ref: {_wrap(row['reference'])}",
                                  f"model: {_wrap(row['answer'])}", f"blind: {_wrap(row['blind_answer'])}"]),
                       fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(out / "samples.png", dpi=110)
    plt.close(fig)
    return "samples.png", rows


def _spread(items: list[str], k: int) -> list[str]:
    """``k`` items evenly spaced through ``items``."""
    return items[:: max(1, len(items) // max(1, k))][:k]


def _wrap(text: str, width: int = 38) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def write_report(out: Path, settings: Any, eval_dir: Path, blind_dir: Path, data: dict,
                 pretraining: dict, timings: dict, wall_seconds: float) -> dict[str, Any]:
    seeing_m, blind_m = _metrics(eval_dir), _metrics(blind_dir)
    proto = settings.headline_protocol
    head, head_blind = seeing_m[proto], blind_m[proto]
    info = read_json(out / "stage2" / "run_info.json")
    goals = settings.goals
    report = {
        "closed_accuracy": head["closed_accuracy"],
        "closed_accuracy_blind": head_blind["closed_accuracy"],
        "open_recall": head["open_recall"],
        "open_recall_blind": head_blind["open_recall"],
        "open_f1": head["open_f1"],
        "open_f1_blind": head_blind["open_f1"],
        "open_precision": head["open_precision"],
        "trainable_params": info["trainable_params"],
        "frozen_params": info["frozen_params"],
        "wall_seconds": round(wall_seconds, 1),
        "protocol": proto,
        "num_closed": head["num_closed"],
        "num_open": head["num_open"],
        "goals": {
            "closed_accuracy_min": goals.closed_accuracy,
            "closed_gap_min": goals.closed_gap,
            "open_recall_gap_min": goals.open_recall_gap,
        },
        "by_protocol": {"image": seeing_m, "blind": blind_m},
        "timings_s": timings,
        "data": {k: v for k, v in data.items() if k != "labels"},
        "pretraining": pretraining,
    }
    closed_gap = report["closed_accuracy"] - report["closed_accuracy_blind"]
    recall_gap = report["open_recall"] - report["open_recall_blind"]
    report["goals"]["met"] = bool(
        report["closed_accuracy"] >= goals.closed_accuracy and closed_gap >= goals.closed_gap
        and recall_gap >= goals.open_recall_gap
    )
    truth = {q["id"]: q for q in read_json(out / "data" / "quiltvqa_test_w_ans.json")}
    curves = plot_losses(out)
    labels = {t["image"]: t["labels"] for t in data.get("labels", [])}
    samples_png, samples = plot_samples(out, _answers(eval_dir), _answers(blind_dir), truth, labels)
    report["samples"] = samples
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", markdown(report, curves, samples_png, closed_gap, recall_gap))
    return report


def markdown(r: dict, curves: str, samples_png: str, closed_gap: float, recall_gap: float) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [
        "# CLOVER demo report",
        "",
        f"Held-out tiles from separate slide regions: {r['num_closed']} closed (yes/no balanced) and "
        f"{r['num_open']} open questions, scored with the `{r['protocol']}` protocol. The blind run is the "
        "same trained model with every image replaced by a blank one.",
        "",
        "| | with image | image-blind | gap |",
        "|---|---|---|---|",
        f"| closed accuracy | {cell(r['closed_accuracy'])} | {cell(r['closed_accuracy_blind'])} | {cell(closed_gap)} |",
        f"| open recall | {cell(r['open_recall'])} | {cell(r['open_recall_blind'])} | {cell(recall_gap)} |",
        f"| open F1 | {cell(r['open_f1'])} | {cell(r['open_f1_blind'])} | |",
        "",
        f"Goals (closed >= {r['goals']['closed_accuracy_min']}, closed gap >= {r['goals']['closed_gap_min']}, "
        f"open recall gap >= {r['goals']['open_recall_gap_min']}): **{'met' if r['goals']['met'] else 'NOT met'}**.",
        "",
        f"Trainable parameters {r['trainable_params']:,}; frozen {r['frozen_params']:,}. "
        f"Wall time {r['wall_seconds']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in r['timings_s'].items())}).",
        "",
        "Other protocols (with image / blind):",
        "",
        "| protocol | closed acc. | open recall | open precision | open F1 |",
        "|---|---|---|---|---|",
    ]
    for name, m in r["by_protocol"]["image"].items():
        b = r["by_protocol"]["blind"][name]
        lines.append(
            f"| {name} | {cell(m['closed_accuracy'])} / {cell(b['closed_accuracy'])} | {cell(m['open_recall'])} / "
            f"{cell(b['open_recall'])} | {cell(m['open_precision'])} / {cell(b['open_precision'])} | "
            f"{cell(m['open_f1'])} / {cell(b['open_f1'])} |"
        )
    lines += ["", "(`llava_med` reproduces LLaVA-Med's script, which leaves a wrong yes/no answer out of the "
              "closed-question denominator; see the README.)"]
    lines += ["", f"![loss curves]({curves})", "", f"![samples]({samples_png})", "",
              "| image | question | reference | model | model, image-blind |", "|---|---|---|---|---|"]
    for s in r["samples"]:
        lines.append(f"| {s['image']} | {s['question']} | {s['reference']} | {s['answer']} | {s['blind_answer']} |")
    return "\n".join(lines) + "\n"
