"""The demo's statistics: per-attribute scores and confidence intervals over tiles.

Questions about one tile are not independent (a model that misreads a tile misses several of its
questions), so intervals resample whole tiles (cluster bootstrap), not questions. Neighbouring
tiles overlap on the slide as well, so even these intervals are a lower bound on the uncertainty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lavis.metrics.vqa import VQARecord, score

BOOTSTRAP_ROUNDS = 2000


def tile_bootstrap_ci(values: Sequence[float], tiles: Sequence[str], seed: int = 0,
                      rounds: int = BOOTSTRAP_ROUNDS) -> list[float] | None:
    """95% percentile interval (in percent) of the mean of ``values``, resampling whole tiles."""
    if not values:
        return None
    names = sorted(set(tiles))
    index = {name: i for i, name in enumerate(names)}
    sums = np.zeros(len(names))
    counts = np.zeros(len(names))
    np.add.at(sums, [index[t] for t in tiles], np.asarray(values, dtype=np.float64))
    np.add.at(counts, [index[t] for t in tiles], 1)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(names), size=(rounds, len(names)))
    means = sums[picks].sum(1) / counts[picks].sum(1)
    low, high = np.percentile(means * 100, [2.5, 97.5])
    return [round(float(low), 2), round(float(high), 2)]


def scored_rows(truth: Sequence[VQARecord], predictions: Mapping[str, str], tiles: Mapping[str, str],
                attributes: Mapping[str, str], protocol: str = "strict") -> list[dict[str, Any]]:
    """Per-question rows of ``protocol`` with the question's tile and attribute added."""
    _, per_item = score(truth, predictions, protocol)
    for row in per_item:
        qid = str(row["question_id"])
        row["tile"], row["attribute"] = tiles[qid], attributes.get(qid, "detailed")
    return per_item


def summarize_rows(rows: Sequence[Mapping[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Closed accuracy and open recall (percent) with tile-bootstrap 95% intervals and counts."""
    closed = [r for r in rows if r["answer_type"] == "CLOSED"]
    open_ = [r for r in rows if r["answer_type"] == "OPEN"]

    def mean(values: list[float]) -> float | None:
        return round(100.0 * sum(values) / len(values), 2) if values else None

    hits, recalls = [float(r["hit"]) for r in closed], [float(r["recall"]) for r in open_]
    return {
        "closed_accuracy": mean(hits),
        "closed_accuracy_ci95": tile_bootstrap_ci(hits, [r["tile"] for r in closed], seed),
        "open_recall": mean(recalls),
        "open_recall_ci95": tile_bootstrap_ci(recalls, [r["tile"] for r in open_], seed),
        "num_closed": len(closed),
        "num_open": len(open_),
        "num_tiles": len({r["tile"] for r in rows}),
    }


def by_attribute(rows: Sequence[Mapping[str, Any]], attributes: Sequence[str], seed: int = 0) -> dict[str, Any]:
    return {name: summarize_rows([r for r in rows if r["attribute"] == name], seed) for name in attributes}
