"""The demo report's pictures: training loss curves and sample tiles with every model's answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lavis.common.jsonio import iter_json_lines


def _train_losses(run_dir: Path) -> list[tuple[int, float]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [record.value for record in iter_json_lines(path)]
    return [(r["step"], r["loss"]) for r in rows if r["type"] == "train" and "loss" in r]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_losses(out: Path) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    panels = (("stage1", "stage 1: ITC + ITM + ITG"), ("stage2", "stage 2: answer tokens"))
    for axis, (stage, title) in zip(axes, panels):
        for run, label in ((stage, "with images"), (f"{stage}_question_only", "question-only")):
            points = _train_losses(out / run)
            if points:
                axis.plot([s for s, _ in points], [v for _, v in points], marker=".", label=label)
        axis.set_title(title)
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("loss")
        axis.grid(alpha=0.3)
        if stage == "stage2":
            axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=110)
    plt.close(fig)
    return "loss_curves.png"


def plot_samples(out: Path, seeing: dict, question_only: dict, blind: dict, truth: dict,
                 labels: dict[str, dict], count: int = 6) -> tuple[str, list[dict[str, Any]]]:
    """``count`` test questions on tiles that show tissue, half closed and half open."""
    from PIL import Image

    plt = _pyplot()

    def shows_tissue(qid: str) -> bool:
        return labels.get(seeing[qid]["metadata"]["image"], {}).get("tissue_fraction") != "small"

    ids = [i for i in sorted(seeing) if shows_tissue(i)] or sorted(seeing)
    closed = [i for i in ids if truth[i]["answer_type"] == "CLOSED"]
    open_ = [i for i in ids if truth[i]["answer_type"] == "OPEN"]
    picked = _spread(closed, count // 2) + _spread(open_, count - count // 2)
    rows = []
    fig, axes = plt.subplots(1, max(1, len(picked)), figsize=(3.2 * max(1, len(picked)), 5.0), squeeze=False)
    for axis, qid in zip(axes[0], picked):
        image = seeing[qid]["metadata"]["image"]
        axis.imshow(Image.open(out / "data" / "images" / image))
        axis.axis("off")
        row = {"question_id": qid, "image": image, "question": seeing[qid]["prompt"], "reference": truth[qid]["answer"],
               "answer": seeing[qid]["text"], "question_only_answer": question_only[qid]["text"],
               "blind_answer": blind[qid]["text"]}
        rows.append(row)
        axis.set_title("\n".join([_wrap(row["question"]), f"ref: {_wrap(row['reference'])}",
                                  f"model: {_wrap(row['answer'])}", f"question-only: {_wrap(row['question_only_answer'])}"]),
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
