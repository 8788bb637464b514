"""The output files: ``instructions.jsonl``, the LLaVA conversation export, ``summary.json`` + PNG.

All are rebuilt from ``raw.jsonl`` (generated pairs) and the template records at the end of
every run, in input order, and written atomically, so a resumed run produces the same files as
an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lavis.common.checkpoint import atomic_write_text
from lavis.instructions.conversations import carry_history, conversations_of

INSTRUCTIONS_FILE = "instructions.jsonl"
LLAVA_FILE = "instructions_llava.json"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "summary.png"
_YES_NO = re.compile(r"^\s*(yes|no)\b", re.IGNORECASE)


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see a half-written file."""
    atomic_write_text(path, text)


def generated_instructions(raw_records: Iterable[dict[str, Any]], conversation: bool = False) -> list[dict[str, Any]]:
    """One instruction per accepted pair of every raw record (an answer opening with yes/no is CLOSED).
    ``conversation``: the pairs of a caption form one conversation in order (the protocol asked the
    chat model for one), so each carries the accepted pairs before it as ``history``."""
    out = []
    for record in raw_records:
        for index, pair in enumerate(record.get("pairs") or []):
            closed = _YES_NO.match(pair["answer"])
            out.append(
                {
                    "id": f"{record['caption_id']}:g{index}",
                    "question": pair["question"],
                    "answer": pair["answer"],
                    "image": record["image"],
                    "caption": record["caption"],
                    "caption_id": str(record["caption_id"]),
                    "source": "generated",
                    "answer_type": "CLOSED" if closed else "OPEN",
                    **({"yes_no_answer": closed.group(1).lower()} if closed else {}),
                }
            )
    return carry_history(out) if conversation else out


def ordered(instructions: list[dict[str, Any]], rows: dict[str, int]) -> list[dict[str, Any]]:
    """Input order (caption row), generated before template, then pair index: a stable total order."""

    def key(item: dict[str, Any]) -> tuple:
        caption_id = item["caption_id"]
        index = int(item["id"].rsplit(":", 1)[1][1:])
        return (rows.get(caption_id, math.inf), caption_id, item["source"] != "generated", index)

    return sorted(instructions, key=key)


def to_llava(instructions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """LLaVA(-Med) conversation records, one per conversation (a single instruction is a
    one-turn conversation): the first human turn is the question followed by ``<image>``."""
    records = []
    for turns in conversations_of(instructions):
        messages = []
        for index, item in enumerate(turns):
            question = f"{item['question']}\n<image>" if index == 0 else item["question"]
            messages += [{"from": "human", "value": question}, {"from": "gpt", "value": item["answer"]}]
        first = turns[0]
        record = {"id": first.get("conversation_id") or first["id"], "image": first["image"], "conversations": messages}
        if len(turns) == 1:
            record["answer_type"] = first["answer_type"]
        records.append(record)
    return records


def write_instruction_files(out_dir: Path, instructions: list[dict[str, Any]]) -> None:
    lines = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in instructions)
    write_atomic(out_dir / INSTRUCTIONS_FILE, lines)
    write_atomic(out_dir / LLAVA_FILE, json.dumps(to_llava(instructions), ensure_ascii=False, indent=1) + "\n")


def length_histogram(lengths: list[int]) -> dict[str, Any]:
    """Word-count histogram with at most ~30 integer-aligned bins, plus mean/median/max."""
    if not lengths:
        return {"edges": [], "counts": [], "mean": None, "median": None, "max": None}
    top = max(lengths)
    width = max(1, math.ceil((top + 1) / 30))
    edges = list(range(0, top + width + 1, width))
    counts = [0] * (len(edges) - 1)
    for value in lengths:
        counts[min(value // width, len(counts) - 1)] += 1
    return {
        "edges": edges,
        "counts": counts,
        "mean": round(statistics.fmean(lengths), 2),
        "median": statistics.median(lengths),
        "max": top,
    }


def _error_kind(error: str | None) -> str:
    return (error or "unknown").split(":", 1)[0].strip()


def build_summary(
    raw_records: list[dict[str, Any]], instructions: list[dict[str, Any]], **sections: Any
) -> dict[str, Any]:
    """Counts by source and type, rejections and failures by reason, tokens, cost, length histograms."""
    costs = [r.get("cost_usd") for r in raw_records]
    usage_keys = ("prompt_tokens", "completion_tokens", "replies", "http_requests")
    usage = {key: sum(int(r["usage"].get(key, 0)) for r in raw_records) for key in usage_keys}
    usage["records_with_estimated_usage"] = sum(bool(r["usage"].get("estimated")) for r in raw_records)
    return {
        "counts": {
            "generation_records": len(raw_records),
            "generation_ok": sum(r["status"] == "ok" for r in raw_records),
            "generation_failed": sum(r["status"] != "ok" for r in raw_records),
            "generated_pairs_rejected": sum(len(r.get("rejected") or []) for r in raw_records),
            "instructions": len(instructions),
            "by_source": dict(sorted(Counter(i["source"] for i in instructions).items())),
            "by_answer_type": dict(sorted(Counter(i["answer_type"] for i in instructions).items())),
        },
        "rejections_by_reason": dict(Counter(p["reason"] for r in raw_records for p in r.get("rejected") or []).most_common()),
        "failures_by_reason": dict(Counter(_error_kind(r.get("error")) for r in raw_records if r["status"] != "ok").most_common()),
        "parse_errors_by_reason": dict(Counter(_error_kind(e) for r in raw_records for e in r.get("parse_errors") or []).most_common()),
        "usage": usage,
        "cost_usd": None if any(c is None for c in costs) else round(sum(costs), 6),
        "lengths_words": {
            "question": length_histogram([len(i["question"].split()) for i in instructions]),
            "answer": length_histogram([len(i["answer"].split()) for i in instructions]),
        },
        **sections,
    }


def _bar(axis: Any, data: dict[str, int], title: str) -> None:
    names = list(data) or ["(none)"]
    axis.barh(names, [data.get(n, 0) for n in names], color="#4c72b0")
    axis.invert_yaxis()
    axis.set_title(title, fontsize=10)
    axis.tick_params(labelsize=8)


def _histogram(axis: Any, hist: dict[str, Any], title: str) -> None:
    if hist["counts"]:
        edges = hist["edges"]
        axis.bar(edges[:-1], hist["counts"], width=edges[1] - edges[0], align="edge", color="#55a868")
    axis.set_title(f"{title} (mean {hist['mean']})", fontsize=10)
    axis.set_xlabel("words", fontsize=8)
    axis.tick_params(labelsize=8)


def plot_summary(summary: dict[str, Any], path: Path) -> None:
    """Four panels: instructions by source, rejections by reason, question and answer lengths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(11, 7))
    _bar(axes[0, 0], summary["counts"]["by_source"], "instructions by source")
    _bar(axes[0, 1], summary["rejections_by_reason"], "rejected generated pairs by reason")
    _histogram(axes[1, 0], summary["lengths_words"]["question"], "question length")
    _histogram(axes[1, 1], summary["lengths_words"]["answer"], "answer length")
    usage, cost = summary["usage"], summary["cost_usd"]
    cost_text = "unknown" if cost is None else f"${cost:.4f}"
    figure.suptitle(
        f"{summary['counts']['instructions']} instructions | tokens in {usage['prompt_tokens']:,} "
        f"out {usage['completion_tokens']:,} | cost {cost_text}",
        fontsize=11,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    write_atomic(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    plot_summary(summary, out_dir / PLOT_FILE)
