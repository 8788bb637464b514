"""The demo's conversation goals, measured through the real server as a user meets the model.

``python -m lavis.serve`` on the demo model runs in this process on a loopback port
(``lavis.apps.serve.background``) and the official ``openai`` client asks it:

1. every test question in a held-out wording, alone (the tile and the question);
2. every closed one of those again as a follow-up, after one earlier turn on the same tile:
   another held-out-wording question about it (another attribute; a description request when the
   tile has no other) and the model's own answer to that;
3. for every closed answer, whether the yes/no confidence the server reports agrees with the
   verdict in the answer text (``lavis.models.llm.verdict``): the bar and the text say the same,
   or an answer without a verdict shows no bar.

Every request and answer goes to ``<out>/served/answers.jsonl``; the figures to the report.
"""

from __future__ import annotations

import base64
import json
import logging
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lavis.apps.demo.scoring import scored_rows, summarize_rows, tile_bootstrap_ci
from lavis.common.checkpoint import atomic_write_text
from lavis.common.jsonio import iter_json_lines, read_json
from lavis.datasets.demo.build import quilt_vqa_files
from lavis.datasets.demo.wordings import load_wording_file
from lavis.metrics.vqa_files import load_ground_truth
from lavis.models.llm.verdict import verdict

logger = logging.getLogger("lavis.apps.demo")
CLIENTS = 8  # concurrent requests: the server's dynamic batcher groups them


def measure_served(model: Path, out: Path, max_tokens: int = 20, seed: int = 0) -> dict[str, Any]:
    """Ask the served demo model the held-out test questions alone and as follow-ups; score them."""
    data = out / "data"
    questions = [r.value for r in iter_json_lines(data / quilt_vqa_files("test")[0])]
    kinds, attributes = read_json(data / "question_wordings.json"), read_json(data / "question_attributes.json")
    heldout = [q for q in questions if kinds.get(str(q["question_id"])) == "heldout"]
    truth = {str(r.question_id): r for r in load_ground_truth(data / quilt_vqa_files("test")[1])}
    closed = [q for q in heldout if truth[str(q["question_id"])].answer_type == "CLOSED"]
    describe = load_wording_file().heldout["test"].detailed[0]
    earlier = {str(q["question_id"]): earlier_question(q, heldout, attributes, describe, seed) for q in closed}

    from openai import OpenAI

    from lavis.apps.serve.background import background_server

    app = _server_app(model)
    with background_server(app) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
        card = client.models.list().data[0].model_dump()  # the conversation contract, where the server states it

        def ask(item: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
            image, turns = item
            return _ask(client, card["id"], data / "images" / image, turns, max_tokens)

        alone_items = _unique([(q["image"], q["text"]) for q in heldout] + list(earlier.values()))
        with ThreadPoolExecutor(CLIENTS) as pool:
            replies = dict(zip(alone_items, pool.map(ask, [(img, [{"user": text}]) for img, text in alone_items])))
            follow_items = [(q["image"], [{"user": earlier[str(q["question_id"])][1],
                                           "assistant": replies[earlier[str(q["question_id"])]]["text"]},
                                          {"user": q["text"]}]) for q in closed]
            follow_replies = list(pool.map(ask, follow_items))
    records = [{"question_id": q["question_id"], "mode": "alone", "image": q["image"], "question": q["text"],
                **replies[(q["image"], q["text"])]} for q in heldout]
    records += [{"question_id": q["question_id"], "mode": "followup", "image": q["image"], "question": q["text"],
                 "earlier": {"question": turns[0]["user"], "answer": turns[0]["assistant"]}, **reply}
                for q, (_, turns), reply in zip(closed, follow_items, follow_replies)]
    folder = out / "served"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "answers.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    return {**score_served(records, truth, attributes), "model_card": card}


def earlier_question(question: dict[str, Any], heldout: Sequence[dict[str, Any]], attributes: dict[str, str],
                     describe: str, seed: int) -> tuple[str, str]:
    """(image, text) of the earlier turn before a follow-up: another held-out question about the same
    tile on another attribute, drawn by a generator seeded per question; else a description request."""
    asked = attributes.get(str(question["question_id"]))
    others = sorted({q["text"] for q in heldout if q["image"] == question["image"]
                     and attributes.get(str(q["question_id"]), "detailed") not in (asked, "detailed")})
    if not others:
        return question["image"], describe
    return question["image"], random.Random(f"{seed}:{question['question_id']}").choice(others)


def _unique(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(items))


def _server_app(model: Path) -> Any:
    """The app ``python -m lavis.serve --model <model>`` serves, built by its own code."""
    from lavis.apps.serve.__main__ import build_app, build_parser

    args = build_parser().parse_args(["--model", str(model), "--device", "cpu", "--examples", "none",
                                      "--max-wait-ms", "10"])
    return build_app(args, None)[0]


def _ask(client: Any, model: str, image: Path, turns: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    """One chat completion: the tile in the first user message, earlier turns, then the question."""
    url = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    messages: list[dict[str, Any]] = []
    for index, turn in enumerate(turns):
        parts: list[dict[str, Any]] = [{"type": "text", "text": turn["user"]}]
        if index == 0:
            parts.insert(0, {"type": "image_url", "image_url": {"url": url}})
        messages.append({"role": "user", "content": parts})
        if "assistant" in turn:
            messages.append({"role": "assistant", "content": turn["assistant"]})
    reply = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0)
    choice = reply.choices[0]
    return {"text": choice.message.content, "yes_no": (choice.model_extra or {}).get("yes_no")}


def agrees(text: str, yes_no: dict[str, float] | None) -> bool:
    """The confidence shown agrees with the answer text: a bar whose larger side is the text's verdict,
    or no bar for an answer without a verdict."""
    said = verdict(text or "")
    if yes_no is None or said is None:
        return yes_no is None and said is None
    return ("yes" if yes_no["yes"] >= yes_no["no"] else "no") == said


def score_served(records: list[dict[str, Any]], truth: dict[str, Any], attributes: dict[str, str]) -> dict[str, Any]:
    """Strict scores of the alone and follow-up answers (tile-bootstrap intervals) and the agreement."""
    def rows(mode: str, closed_only: bool = False) -> list[dict[str, Any]]:
        chosen = [r for r in records if r["mode"] == mode
                  and (not closed_only or truth[str(r["question_id"])].answer_type == "CLOSED")]
        ids = [str(r["question_id"]) for r in chosen]
        return scored_rows([truth[i] for i in ids], {i: r["text"] for i, r in zip(ids, chosen)},
                           {i: r["image"] for i, r in zip(ids, chosen)}, attributes)

    alone = summarize_rows(rows("alone"))
    alone_closed, followup = summarize_rows(rows("alone", closed_only=True)), summarize_rows(rows("followup"))
    closed_records = [r for r in records if truth[str(r["question_id"])].answer_type == "CLOSED"]
    agreement = [float(agrees(r["text"], r["yes_no"])) for r in closed_records]
    return {
        "closed_accuracy_heldout_wording": alone["closed_accuracy"],
        "closed_accuracy_heldout_wording_ci95": alone["closed_accuracy_ci95"],
        "open_recall_heldout_wording": alone["open_recall"],
        "open_recall_heldout_wording_ci95": alone["open_recall_ci95"],
        "num_closed": alone["num_closed"], "num_open": alone["num_open"], "num_tiles": alone["num_tiles"],
        "followup_closed_accuracy": followup["closed_accuracy"],
        "followup_closed_accuracy_ci95": followup["closed_accuracy_ci95"],
        "alone_closed_accuracy": alone_closed["closed_accuracy"],
        "num_followups": followup["num_closed"],
        "verdict_confidence_agreement": round(100 * sum(agreement) / len(agreement), 2) if agreement else None,
        "verdict_confidence_agreement_ci95": tile_bootstrap_ci(agreement, [r["image"] for r in closed_records]),
        "num_closed_answers_checked": len(agreement),
        "closed_answers_without_bar": sum(r["yes_no"] is None for r in closed_records),
        "closed_answers_without_verdict": sum(verdict(r["text"] or "") is None for r in closed_records),
    }
