"""Does the demo model's answer to the density question follow the density the pixels show?

Fresh fields of view are cut from the held-out region of the H&E slide on a grid offset from the
test tiles', at both magnifications, and every field that shows tissue is kept, including those
whose hematoxylin density lies inside the ambiguity band that training never labelled. Per field
the model's P(yes) to "Is the tissue in this image dense?" is compared with the mean hematoxylin
optical density measured by colour deconvolution (Spearman's rank correlation).

P(yes) is the model's likelihood of the yes answer against the no answer, each written the way the
demo's closed answers are ("The tissue is dense: yes." vs "The tissue is loose: no."), so it reflects
what the model sees, not only its verdict on a fixed observation. The verdict-swap P(yes) of
``model.yes_no_probabilities`` is reported beside it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lavis.common.checkpoint import atomic_write_text
from lavis.common.paths import config_path
from lavis.datasets.demo.tiles import (
    DENSITY_BANDS,
    FRACTION_BANDS,
    WindowMeasure,
    heldout_region,
    to_tile,
)
from lavis.instructions.templates import load_template_bank
from lavis.metrics.ranking import spearman

# (field size, grid stride) per magnification, as the demo's tiles; offset so no field coincides
# with a test tile.
CHECK_FIELDS = ((64, 64), (256, 128))
GRID_OFFSET = 32


@dataclasses.dataclass
class Field:
    image: Any  # PIL tile as the model sees it
    x: int  # level-0 position on the slide
    y: int
    size: int
    hematoxylin: float
    fraction: float


def read_region_rgb() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    import openslide

    region = heldout_region()
    slide = openslide.OpenSlide(str(region.slide))
    try:
        x, y, width, height = region.box
        return np.asarray(slide.read_region((x, y), 0, (width, height)).convert("RGB")), region.box
    finally:
        slide.close()


def heldout_fields(min_fraction: float = FRACTION_BANDS[0]) -> list[Field]:
    """Every grid field of the held-out region with at least ``min_fraction`` tissue."""
    rgb, (x0, y0, _, _) = read_region_rgb()
    measure = WindowMeasure(rgb)
    fields = []
    for size, stride in CHECK_FIELDS:
        for y in range(GRID_OFFSET, rgb.shape[0] - size + 1, stride):
            for x in range(GRID_OFFSET, rgb.shape[1] - size + 1, stride):
                stats = measure(y, x, size)
                if stats["fraction"] >= min_fraction:
                    fields.append(Field(to_tile(rgb[y : y + size, x : x + size]), x0 + x, y0 + y, size,
                                        stats["hematoxylin"], stats["fraction"]))
    return fields


def density_answers() -> tuple[str, str, str, str]:
    """(closed question, its yes answer, its no answer, open question) from the demo's template bank."""
    spec = load_template_bank(config_path("demo/templates.yaml")).attributes["tissue_density"]
    closed, asked = spec.closed, "dense"
    question = closed.questions[0].format(value=asked)
    yes = closed.yes_answers[0].format(value=asked, true_value="dense")
    no = closed.no_answers[0].format(value=asked, true_value="loose")
    open_question = next(q for q in spec.open.questions if "dense or loose" in q)
    return question, yes, no, open_question


@torch.no_grad()
def density_agreement(checkpoint: str | Path, out_dir: Path, max_fields: int | None = None,
                      batch_size: int = 64) -> dict[str, Any]:
    """Score the held-out fields (every one, or ``max_fields`` spread over them), write
    ``density_check.json`` + a scatter plot, return the summary."""
    from lavis.models import load_pretrained

    loaded = load_pretrained(checkpoint, device="cpu")
    model = loaded.model
    question, yes, no, open_question = density_answers()
    fields = heldout_fields()
    if max_fields is not None and len(fields) > max_fields:
        fields = fields[:: -(-len(fields) // max_fields)]
    p_yes, p_verdict, open_answers = [], [], []
    for start in range(0, len(fields), batch_size):
        chunk = fields[start : start + batch_size]
        images = torch.stack([loaded.vis_processor(f.image) for f in chunk])
        samples = {"image": images, "text_input": [loaded.text_processor(question)] * len(chunk)}
        prompts = model.prompts(samples)
        scores = model.bridge.score_targets(model.prefix(samples, prompts), prompts, [[yes, no]] * len(chunk))
        p_yes += torch.softmax(scores.float(), dim=1)[:, 0].tolist()
        p_verdict += model.yes_no_probabilities(samples).tolist()
        open_samples = {"image": images, "text_input": [loaded.text_processor(open_question)] * len(chunk)}
        open_answers += model.generate(open_samples, num_beams=1, max_new_tokens=8, min_new_tokens=1)
    hematoxylin = [f.hematoxylin for f in fields]
    rows = [{"x": f.x, "y": f.y, "field_px": f.size, "fraction": round(f.fraction, 4),
             "hematoxylin": round(f.hematoxylin, 5), "p_yes": round(p, 4), "p_yes_verdict": round(v, 4),
             "open_answer": a} for f, p, v, a in zip(fields, p_yes, p_verdict, open_answers)]
    summary = {
        "density_spearman": _round(spearman(p_yes, hematoxylin)),
        "density_spearman_verdict": _round(spearman(p_verdict, hematoxylin)),
        "num_fields": len(fields),
        "fields_by_size": {str(size): sum(f.size == size for f in fields) for size, _ in CHECK_FIELDS},
        "question": question,
        "answers": [yes, no],
        "by_band": _by_band(rows),
    }
    atomic_write_text(out_dir / "density_check.json", json.dumps({**summary, "fields": rows}, indent=1))
    summary["plot"] = _plot(rows, out_dir / "density_check.png")
    return summary


def _band_of(hematoxylin: float) -> str:
    if hematoxylin <= DENSITY_BANDS[0]:
        return "loose"
    return "dense" if hematoxylin >= DENSITY_BANDS[1] else "between"


def _by_band(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per hematoxylin band: fields, mean P(yes) and the share of open answers naming each label."""
    out = {}
    for band in ("loose", "between", "dense"):
        members = [r for r in rows if _band_of(r["hematoxylin"]) == band]
        if not members:
            continue
        answers = [r["open_answer"].lower() for r in members]
        out[band] = {
            "fields": len(members),
            "mean_p_yes": round(float(np.mean([r["p_yes"] for r in members])), 4),
            "open_says_dense": round(sum("dense" in a for a in answers) / len(members), 3),
            "open_says_loose": round(sum("loose" in a for a in answers) / len(members), 3),
        }
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _plot(rows: list[dict[str, Any]], path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(5, 3.4))
    for (size, _), marker in zip(CHECK_FIELDS, ("o", "s")):
        chosen = [r for r in rows if r["field_px"] == size]
        axis.scatter([r["hematoxylin"] for r in chosen], [r["p_yes"] for r in chosen], s=14, marker=marker,
                     alpha=0.7, label=f"{size}-px fields")
    for edge in DENSITY_BANDS:
        axis.axvline(edge, color="grey", linestyle="--", linewidth=0.8)
    axis.set_xlabel("mean hematoxylin OD over tissue (measured)")
    axis.set_ylabel("P(yes): 'Is the tissue dense?'")
    axis.set_title("held-out region of the H&E slide", fontsize=9)
    axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
