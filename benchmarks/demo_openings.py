"""Does an opening the demo model never saw change how it reads a closed question?

    python -m benchmarks.demo_openings [--run runs/demo] [--label NAME] [--out benchmarks/results_demo_openings.json]

A user rarely asks the bare question: "Quick note: is the tissue dense?", "Okay, so is it H&E?".
This asks the trained demo model (``<run>/stage2``'s chosen checkpoint, through
``lavis.apps.inference.Answerer`` as the server does) the validation split's closed questions in
their template wording, bare and after each of 11 openings that no training wording uses (checked
here against the training grammar). Per opening it counts the answers without a yes/no verdict (a
bare value, "large") and the correct ones: the answer's verdict word (``lavis.models.llm.verdict``,
as the server reads it) equals the truth's yes/no. Validation tiles only: the test split decides
nothing here.

Results are keyed by ``--label`` (e.g. a commit) in the output file, so two runs of ``make demo``
(before and after a change) can be compared side by side.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from lavis.apps.demo.pipeline import checkpoint_of
from lavis.common.checkpoint import atomic_write_text
from lavis.common.jsonio import iter_json_lines, read_json
from lavis.datasets.demo.build import quilt_vqa_files
from lavis.datasets.demo.wordings import expand_grammar, load_wording_file, normalized
from lavis.metrics.vqa import load_ground_truth
from lavis.models.llm.verdict import verdict

# openings no training wording starts with (asserted against the grammar below)
OPENINGS = ["Quick note:", "Short question:", "Simple question:", "Question:", "Just asking:", "Hey there:",
            "Okay, so", "Hi.", "Check this:", "Curious:", "Well,"]


def with_opening(opening: str, question: str) -> str:
    return question if not opening else f"{opening} {question[:1].lower()}{question[1:]}"


def check_unseen(openings: list[str]) -> None:
    """No opening may start a training wording of the paraphrase grammar."""
    wordings = expand_grammar(load_wording_file().generated)
    frames = [f for kind in (wordings.closed, wordings.open) for fs in kind.values() for f in fs] + wordings.detailed
    starts = {normalized(f) for f in frames}
    for opening in openings:
        seen = [f for f in starts if f.startswith(normalized(opening) + " ")]
        if seen:
            raise SystemExit(f"opening {opening!r} is a training opening ({seen[0]!r}); pick unseen ones")


@torch.no_grad()
def measure(run: Path, openings: list[str], batch_size: int = 32) -> dict[str, Any]:
    from lavis.apps.inference import Answerer
    from lavis.models import load_pretrained

    data = run / "data"
    answerer = Answerer(load_pretrained(checkpoint_of(run / "stage2")))
    truth = {str(r.question_id): r for r in load_ground_truth(data / quilt_vqa_files("val")[1])}
    kinds = read_json(data / "question_wordings.json")
    questions = [r.value for r in iter_json_lines(data / quilt_vqa_files("val")[0])
                 if kinds.get(str(r.value["question_id"])) == "template"
                 and truth[str(r.value["question_id"])].answer_type == "CLOSED"]
    images = {q["image"]: answerer.image_tensor(Image.open(data / "images" / q["image"]).convert("RGB")) for q in questions}
    out = {}
    for opening in ["", *openings]:
        queries = [answerer.query(images[q["image"]], with_opening(opening, q["text"])) for q in questions]
        answers = [a for k in range(0, len(queries), batch_size) for a in answerer.answer(queries[k : k + batch_size])]
        verdicts = [verdict(a.choices[0].text) for a in answers]
        right = sum(v is not None and v == truth[str(q["question_id"])].yes_no_answer for q, v in zip(questions, verdicts))
        out[opening or "(none)"] = {"questions": len(questions), "without_verdict": sum(v is None for v in verdicts),
                                    "closed_accuracy": round(100 * right / len(questions), 2)}
        print(f"[demo_openings] {opening or '(none)':18} {out[opening or '(none)']}", flush=True)
    unseen = [v for k, v in out.items() if k != "(none)"]
    return {"by_opening": out,
            "unseen_openings_closed_accuracy": round(sum(v["closed_accuracy"] for v in unseen) / len(unseen), 2),
            "unseen_openings_without_verdict": sum(v["without_verdict"] for v in unseen),
            "unseen_openings_questions": sum(v["questions"] for v in unseen)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/demo"), help="a `make demo` output folder")
    parser.add_argument("--label", default="current", help="the key of this run in the output file (e.g. a commit)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_demo_openings.json"))
    args = parser.parse_args(argv)
    check_unseen(OPENINGS)
    torch.set_num_threads(1)
    start = time.time()
    result = {**measure(args.run, OPENINGS), "run": str(args.run), "seconds": round(time.time() - start, 1)}
    saved = json.loads(args.out.read_text()) if args.out.exists() else {}
    saved[args.label] = result
    atomic_write_text(args.out, json.dumps(saved, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "by_opening"}, indent=1))


if __name__ == "__main__":
    main()
