"""The demo's report: ``report.json`` (the figures), ``report.md`` (tables, plots, samples), goals.

Headline figures use the ``strict`` protocol on the test split; ``quilt`` and ``llava_med`` are
listed beside it. Every evaluation question is asked in a template wording and again in a wording
held out from training (``question_wordings.json``): the main tables score the template ones (as
before), the held-out-wording figures come from the server (``lavis/apps/demo/served.py``), with
the question-only model on the same wordings beside them. Three models answer the same test questions: the stage-2 model with the images,
the question-only model (the same stage 2 trained and evaluated on blank images) and the seeing
model shown blank images. Validation scores (what development and checkpoint choice looked at)
are reported apart from the test scores.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

from lavis.apps.demo.scoring import by_attribute, scored_rows, summarize_rows
from lavis.common.checkpoint import atomic_write_text
from lavis.common.jsonio import iter_json_lines, read_json
from lavis.datasets.demo.build import ATTRIBUTES, quilt_vqa_files
from lavis.metrics.vqa import load_ground_truth, score

PROTOCOL = "strict"
HEADLINE_KEYS = (
    "closed_accuracy", "closed_accuracy_ci95", "closed_accuracy_question_only", "open_recall", "open_recall_ci95",
    "open_recall_question_only", "open_f1", "num_test_tiles", "closed_accuracy_heldout_wording",
    "open_recall_heldout_wording", "followup_closed_accuracy", "followup_alone_closed_accuracy",
    "verdict_confidence_agreement", "density_spearman", "wall_seconds", "cpu_seconds",
)
UNASKED = ("magnification (high / low power), although H&E fields are labelled with it: the encoder holds it "
           "(linear probe 96% with the value-text term) but the Q-Former passes on 74% and the answers stay at "
           "chance, while asking it upsets the tiny LM's verdicts elsewhere (docs/demo.md, \"Where it is lost\")")
# (report.json key, eval folder, split): the runs the report reads
RUNS = {"image": ("eval", "test"), "question_only": ("eval_question_only", "test"), "blind": ("eval_blind", "test"),
        "validation": ("eval_val", "val")}


def eval_stem(split: str) -> str:
    return f"quilt_vqa_{split}_eval"  # <dataset>_<split>_<epoch label>, as the VQA task names its files


def _answers(eval_dir: Path, split: str) -> dict[str, dict[str, Any]]:
    rows = (record.value for record in iter_json_lines(eval_dir / f"{eval_stem(split)}_answers.jsonl"))
    return {str(r["question_id"]): r for r in rows}


def score_run(out: Path, eval_dir: Path, split: str, attributes: dict[str, str], wording: str = "template"
              ) -> dict[str, Any]:
    """Overall and per-attribute strict scores (tile-bootstrap intervals) + every protocol's summary,
    over the questions asked in ``wording`` ("template" or "heldout")."""
    kinds = read_json(out / "data" / "question_wordings.json")
    answers = {qid: row for qid, row in _answers(eval_dir, split).items() if kinds.get(qid, "template") == wording}
    truth = [r for r in load_ground_truth(out / "data" / quilt_vqa_files(split)[1]) if str(r.question_id) in answers]
    tiles = {qid: row["metadata"]["image"] for qid, row in answers.items()}
    predictions = {qid: row["text"] for qid, row in answers.items()}
    rows = scored_rows(truth, predictions, tiles, attributes, PROTOCOL)
    names = read_json(eval_dir / f"{eval_stem(split)}_metrics.json")["protocols"]
    protocols = {name: {k: round(v, 2) if isinstance(v, float) else v for k, v in score(truth, predictions, name)[0].items()}
                 for name in names}
    return {**summarize_rows(rows), "open_f1": protocols[PROTOCOL]["open_f1"],
            "open_precision": protocols[PROTOCOL]["open_precision"],
            "by_attribute": by_attribute(rows, asked_attributes(attributes)), "protocols": protocols,
            "answers": answers}


def asked_attributes(attributes: dict[str, str]) -> list[str]:
    """The attributes the run's questions ask about (question id -> attribute), in ATTRIBUTES order."""
    asked = set(attributes.values())
    return [name for name in ATTRIBUTES if name in asked]


def missed_goals(report: dict[str, Any], goals: Any) -> list[str]:
    """One sentence per goal the figures miss (empty: every goal met)."""
    missed = []

    def below(value: float | None, floor: float, what: str) -> None:
        if value is None or value < floor:
            shown = "none" if value is None else f"{value:.1f}"
            missed.append(f"{what} is {shown}, goal >= {floor:g}")

    below(report["closed_accuracy"], goals.closed_accuracy, "closed accuracy (strict, test)")
    below(_gap(report, "closed_accuracy"), goals.closed_gap, "closed accuracy over the question-only model")
    below(_gap(report, "open_recall"), goals.open_recall_gap, "open recall over the question-only model")
    for name, scores in report["by_attribute"].items():
        below(scores["closed_accuracy"], goals.attribute_closed_accuracy, f"{name} closed accuracy")
        below(scores["open_recall"], goals.attribute_open_recall, f"{name} open recall")
    served = report["served"]
    below(served["closed_accuracy_heldout_wording"], goals.heldout_closed_accuracy,
          "closed accuracy on held-out wordings (strict, through the server)")
    below(served["open_recall_heldout_wording"], goals.heldout_open_recall,
          "open recall on held-out wordings (through the server)")
    drop = _followup_drop(served)
    if drop is None or drop > goals.followup_max_drop:
        shown = "none" if drop is None else f"{drop:.1f}"
        missed.append(f"a follow-up's closed accuracy is {shown} points below the same questions asked alone, "
                      f"goal <= {goals.followup_max_drop:g}")
    below(served["verdict_confidence_agreement"], goals.verdict_agreement,
          "verdict/confidence agreement of closed answers (through the server)")
    spearman = report["density_spearman"]
    if spearman is None or spearman < goals.density_spearman:
        shown = "none" if spearman is None else f"{spearman:.2f}"
        missed.append(f"density check Spearman is {shown}, goal >= {goals.density_spearman:g}")
    return missed


def _followup_drop(served: dict[str, Any]) -> float | None:
    alone, followup = served.get("alone_closed_accuracy"), served.get("followup_closed_accuracy")
    return None if alone is None or followup is None else round(alone - followup, 2)


def _gap(report: dict[str, Any], key: str) -> float | None:
    seeing, blind = report.get(key), report.get(f"{key}_question_only")
    return None if seeing is None or blind is None else seeing - blind


def cpu_seconds() -> float:
    """CPU time of this process and every finished child (the stage runs)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return round(own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime, 1)


def write_report(out: Path, settings: Any, data: dict, pretraining: dict, density: dict, served: dict,
                 timings: dict, wall_seconds: float) -> dict[str, Any]:
    attributes = read_json(out / "data" / "question_attributes.json")
    runs = {name: score_run(out, out / folder, split, attributes) for name, (folder, split) in RUNS.items()}
    heldout = {name: score_run(out, out / folder, split, attributes, "heldout")
               for name, (folder, split) in RUNS.items() if name != "blind"}
    image, question_only, blind = runs["image"], runs["question_only"], runs["blind"]
    info = read_json(out / "stage2" / "run_info.json")
    report: dict[str, Any] = {
        "protocol": PROTOCOL,
        "closed_accuracy": image["closed_accuracy"],
        "closed_accuracy_ci95": image["closed_accuracy_ci95"],
        "closed_accuracy_question_only": question_only["closed_accuracy"],
        "closed_accuracy_question_only_ci95": question_only["closed_accuracy_ci95"],
        "closed_accuracy_blind": blind["closed_accuracy"],
        "open_recall": image["open_recall"],
        "open_recall_ci95": image["open_recall_ci95"],
        "open_recall_question_only": question_only["open_recall"],
        "open_recall_question_only_ci95": question_only["open_recall_ci95"],
        "open_recall_blind": blind["open_recall"],
        "open_f1": image["open_f1"],
        "open_f1_question_only": question_only["open_f1"],
        "open_f1_blind": blind["open_f1"],
        "open_precision": image["open_precision"],
        "num_test_tiles": image["num_tiles"],
        "num_closed": image["num_closed"],
        "num_open": image["num_open"],
        "by_attribute": image["by_attribute"],
        "by_attribute_question_only": question_only["by_attribute"],
        "closed_accuracy_heldout_wording": served["closed_accuracy_heldout_wording"],
        "closed_accuracy_heldout_wording_ci95": served["closed_accuracy_heldout_wording_ci95"],
        "open_recall_heldout_wording": served["open_recall_heldout_wording"],
        "open_recall_heldout_wording_ci95": served["open_recall_heldout_wording_ci95"],
        "followup_closed_accuracy": served["followup_closed_accuracy"],
        "followup_closed_accuracy_ci95": served["followup_closed_accuracy_ci95"],
        "followup_alone_closed_accuracy": served["alone_closed_accuracy"],
        "verdict_confidence_agreement": served["verdict_confidence_agreement"],
        "served": served,
        "heldout_wording": {name: {k: v for k, v in run.items() if k not in ("answers",)}
                            for name, run in heldout.items()},
        "density_spearman": density["density_spearman"],
        "density_check": density,
        "validation": {k: v for k, v in runs["validation"].items() if k not in ("answers", "protocols")},
        "by_protocol": {name: runs[name]["protocols"] for name in ("image", "question_only", "blind")},
        "checkpoints": {stage: _chosen(out / stage) for stage in ("stage2", "stage2_question_only")},
        "trainable_params": info["trainable_params"],
        "frozen_params": info["frozen_params"],
        "wall_seconds": round(wall_seconds, 1),
        "cpu_seconds": cpu_seconds(),
        "timings_s": timings,
        "data": {k: v for k, v in data.items() if k != "labels"},
        "pretraining": pretraining,
    }
    goals = settings.goals
    report["goals"] = {**{k: getattr(goals, k) for k in vars(goals)}, "checked": settings.check_goals}
    report["goals"]["missed"] = missed_goals(report, goals)
    report["goals"]["met"] = not report["goals"]["missed"]
    labels = {t["image"]: t["labels"] for t in data.get("labels", [])}
    truth = {q["id"]: q for q in read_json(out / "data" / quilt_vqa_files("test")[1])}
    from lavis.apps.demo.report_plots import plot_losses, plot_samples

    curves = plot_losses(out)
    samples_png, report["samples"] = plot_samples(out, image["answers"], question_only["answers"], blind["answers"],
                                                  truth, labels)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", markdown(report, curves, samples_png))
    return report


def _chosen(run_dir: Path) -> dict[str, Any] | None:
    """The validation-chosen checkpoint of a run (``summary.json``'s ``best``), if validation ran."""
    summary = run_dir / "summary.json"
    return read_json(summary).get("best") if summary.exists() else None


def _cell(value: float | None, ci: list[float] | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")


def markdown(r: dict[str, Any], curves: str, samples_png: str) -> str:
    g = r["goals"]
    lines = [
        "# CLOVER demo report",
        "",
        f"Test split: {r['num_closed']} closed (yes/no balanced per wording) and {r['num_open']} open questions on "
        f"{r['num_test_tiles']} distinct tiles from held-out regions, scored with the `{r['protocol']}` protocol. "
        "Brackets: 95% intervals from resampling whole tiles (neighbouring tiles overlap, so read them as lower "
        "bounds on the uncertainty).",
        "",
        "| | with image | question-only model | with image, blank at test | gap over question-only |",
        "|---|---|---|---|---|",
        f"| closed accuracy | {_cell(r['closed_accuracy'], r['closed_accuracy_ci95'])} | "
        f"{_cell(r['closed_accuracy_question_only'], r['closed_accuracy_question_only_ci95'])} | "
        f"{_cell(r['closed_accuracy_blind'])} | {_cell(_gap(r, 'closed_accuracy'))} |",
        f"| open recall | {_cell(r['open_recall'], r['open_recall_ci95'])} | "
        f"{_cell(r['open_recall_question_only'], r['open_recall_question_only_ci95'])} | "
        f"{_cell(r['open_recall_blind'])} | {_cell(_gap(r, 'open_recall'))} |",
        f"| open F1 | {_cell(r['open_f1'])} | {_cell(r['open_f1_question_only'])} | {_cell(r['open_f1_blind'])} | |",
        "",
        "The question-only model is the same stage 2 trained and evaluated with every image blank: what the "
        "wording of the questions alone can teach. The last model column is the seeing model shown blank images.",
        "",
        "## Per attribute (test)",
        "",
        "| attribute | closed accuracy (n) | open recall (n) | question-only closed / open | tiles |",
        "|---|---|---|---|---|",
    ]
    for name, a in r["by_attribute"].items():
        q = r["by_attribute_question_only"][name]
        lines.append(f"| {name} | {_cell(a['closed_accuracy'], a['closed_accuracy_ci95'])} ({a['num_closed']}) | "
                     f"{_cell(a['open_recall'], a['open_recall_ci95'])} ({a['num_open']}) | "
                     f"{_cell(q['closed_accuracy'])} / {_cell(q['open_recall'])} | {a['num_tiles']} |")
    d = r["density_check"]
    lines += [
        "",
        "## Density check on the held-out slide region",
        "",
        f"{d['num_fields']} fresh fields with tissue ({', '.join(f'{n} of {s} px' for s, n in d['fields_by_size'].items())}),"
        f" including those between the density bands that training never labelled. Spearman correlation of the "
        f"model's P(yes) to \"{d['question']}\" with the hematoxylin density measured from the pixels: "
        f"**{_cell(d['density_spearman'] and d['density_spearman'] * 100)} / 100** "
        f"(verdict-swap P(yes): {_cell(d['density_spearman_verdict'] and d['density_spearman_verdict'] * 100)} / 100).",
        "",
        "| hematoxylin band | fields | mean P(yes) | open answer \"dense\" | open answer \"loose\" |",
        "|---|---|---|---|---|",
    ]
    for band, b in d["by_band"].items():
        lines.append(f"| {band} | {b['fields']} | {b['mean_p_yes']:.2f} | {b['open_says_dense']:.2f} | "
                     f"{b['open_says_loose']:.2f} |")
    lines += ["", f"![density check]({d['plot']})"]
    if d.get("slide_heatmap"):
        h = d["slide_heatmap"]
        lines += ["", f"The same question asked of every tissue tile of the region by the whole-slide job "
                  f"(`python -m lavis.apps.slides.demo`): {h['tiles']} tiles, AUC dense vs loose "
                  f"{_cell(h['auc_dense_vs_loose'])}, Spearman {_cell(h['spearman_vs_hematoxylin'])}.", "",
                  f"![slide heatmap]({h['heatmap']})"]
    lines += heldout_section(r)
    lines += ["", "## Validation split (development and checkpoint choice)", "",
              f"Closed {_cell(r['validation']['closed_accuracy'])}, open recall {_cell(r['validation']['open_recall'])} "
              f"on {r['validation']['num_tiles']} tiles. Per attribute (closed / open recall): "
              + "; ".join(f"{n} {_cell(a['closed_accuracy'])} / {_cell(a['open_recall'])}"
                          for n, a in r["validation"]["by_attribute"].items()) + "."]
    lines += ["", "## Goals", ""]
    lines.append("All goals met." if g["met"] else "Missed: " + "; ".join(g["missed"]) + ".")
    if not g["checked"]:
        lines.append("(Not checked in this run: `--quick` trains too little to answer.)")
    lines += ["", f"Not asked: {UNASKED}."]
    lines += [
        "",
        f"Trainable parameters {r['trainable_params']:,}; frozen {r['frozen_params']:,}. Wall time "
        f"{r['wall_seconds']:.0f} s, CPU time {r['cpu_seconds']:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in r['timings_s'].items())}).",
        "",
        "## Every protocol (with image / question-only / blank at test)",
        "",
        "| protocol | closed acc. | open recall | open precision | open F1 |",
        "|---|---|---|---|---|",
    ]
    for name, m in r["by_protocol"]["image"].items():
        q, b = r["by_protocol"]["question_only"][name], r["by_protocol"]["blind"][name]
        lines.append(" | ".join([f"| {name}"] + [
            f"{_cell(m[k])} / {_cell(q[k])} / {_cell(b[k])}" for k in ("closed_accuracy", "open_recall",
                                                                       "open_precision", "open_f1")]) + " |")
    lines += ["", "(`quilt` reads an answer without a verdict as yes; `llava_med` is LLaVA-Med's released script; "
              "`strict` takes the first yes/no word and counts an answer without one as a miss: docs/metrics.md.)"]
    lines += ["", f"![loss curves]({curves})", "", f"![samples]({samples_png})", "",
              "| image | question | reference | model | question-only model | blank at test |",
              "|---|---|---|---|---|---|"]
    for s in r["samples"]:
        lines.append(f"| {s['image']} | {s['question']} | {s['reference']} | {s['answer']} | "
                     f"{s['question_only_answer']} | {s['blind_answer']} |")
    return "\n".join(lines) + "\n"


def _single_turn(conversation: Any) -> bool:
    return isinstance(conversation, dict) and conversation.get("mode") == "single_turn"


def heldout_section(r: dict[str, Any]) -> list[str]:
    """Held-out wordings, follow-ups and verdict agreement, as measured through the server."""
    s, h = r["served"], r["heldout_wording"]
    contract = s.get("model_card") or {}
    mode = contract.get("conversation", "not reported by /v1/models")
    return [
        "", "## Held-out wordings and follow-ups (through `python -m lavis.serve`)", "",
        f"The test questions again, each unit in a wording never used in training (validation has a third set of "
        f"wordings): {s['num_closed']} closed and {s['num_open']} open on {s['num_tiles']} tiles, sent by the official "
        "`openai` client to the real server on a loopback port.", "",
        "| | through the server | evaluate.py, same model | question-only model |",
        "|---|---|---|---|",
        f"| closed accuracy, held-out wording | {_cell(s['closed_accuracy_heldout_wording'], s['closed_accuracy_heldout_wording_ci95'])}"
        f" | {_cell(h['image']['closed_accuracy'])} | "
        f"{_cell(h['question_only']['closed_accuracy'], h['question_only']['closed_accuracy_ci95'])} |",
        f"| open recall, held-out wording | {_cell(s['open_recall_heldout_wording'], s['open_recall_heldout_wording_ci95'])}"
        f" | {_cell(h['image']['open_recall'])} | "
        f"{_cell(h['question_only']['open_recall'], h['question_only']['open_recall_ci95'])} |",
        f"| validation, held-out wording (closed / open) | | {_cell(h['validation']['closed_accuracy'])} / "
        f"{_cell(h['validation']['open_recall'])} | |",
        "",
        f"Follow-ups: each closed question asked after one earlier turn on the same tile (another question about it "
        f"and the model's own answer): closed accuracy {_cell(s['followup_closed_accuracy'], s['followup_closed_accuracy_ci95'])}"
        f" against {_cell(s['alone_closed_accuracy'])} for the same {s['num_followups']} questions asked alone. "
        f"The model's conversation contract as `/v1/models` reports it: {json.dumps(mode)}."
        + (" A single-turn model is answered without the earlier turn, so this row shows that the history is left "
           "out, not that the model follows a conversation." if _single_turn(mode) else ""),
        "",
        f"Verdict/confidence agreement: {_cell(s['verdict_confidence_agreement'])}% of {s['num_closed_answers_checked']} "
        f"closed answers (alone and follow-up) show a yes/no confidence whose larger side is the verdict in the answer "
        f"text, or no confidence for an answer without a verdict ({s['closed_answers_without_bar']} without a "
        f"confidence, {s['closed_answers_without_verdict']} without a verdict).",
    ]
