"""``python -m lavis.predict --model PATH --questions FILE --out answers.jsonl``: answer a question
file (QUILT-VQA ``*_wo_ans.jsonl``, LLaVA-Med question or conversation files), or every image of a
folder (``--images DIR --question TEXT``), in batches, into a LLaVA-Med answer file that
``python -m lavis.metrics.vqa`` scores.

Resumable: answers are appended batch by batch (flushed to disk); a rerun skips the questions
already answered, and a line cut short by a crash is dropped and answered again. One writer per
answer file (a lock beside it). Decoding defaults are evaluate.py's (beam 5, 40 new tokens, at
least 5), then the run's own ``run.generation``, then ``--generation``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lavis.apps.inference.questions import QuestionRow
from lavis.common.errors import DataError, LavisError

logger = logging.getLogger("lavis.apps.predict")


def answered_ids(out: Path) -> set[str]:
    """Question ids already in ``out``; a last line cut short (no newline) is removed from the file."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        logger.warning("%s: dropping a last line cut short (%d bytes); it is answered again", out, len(data) - end)
        with open(out, "r+b") as handle:
            handle.truncate(end)
    done = set()
    for number, line in enumerate(data[:end].decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            done.add(str(json.loads(line)["question_id"]))
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{out}: line {number} is not an answer record ({{question_id, text, ...}}); "
                            "is --out another file? Use a new --out") from None
    return done


def batches(rows: list[QuestionRow], size: int) -> Iterator[list[QuestionRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def predict(answerer: Any, decoding: Any, rows: list[QuestionRow], out: Path, batch_size: int = 16,
            model_id: str = "clover", yes_no: bool = False, progress: bool = True) -> int:
    """Answer ``rows`` not yet in ``out``; returns how many were answered now."""
    from tqdm import tqdm

    from lavis.apps.inference.images import image_from_file
    from lavis.common.output_lock import OutputLock
    from lavis.metrics.vqa_files import answer_record

    out.parent.mkdir(parents=True, exist_ok=True)
    with OutputLock(out.parent, "prediction run", name=f".{out.name}.lock"):
        done = answered_ids(out)
        todo = [row for row in rows if str(row.question_id) not in done]
        bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc="answering", unit="q",
                   disable=not progress, dynamic_ncols=True)

        def load(batch: list[QuestionRow]) -> list[Any]:
            return [answerer.image_tensor(image_from_file(row.image)) for row in batch]

        # the next batch's images are read while the model answers this one
        with concurrent.futures.ThreadPoolExecutor(1) as reader, open(out, "a", encoding="utf-8") as handle:
            parts = list(batches(todo, batch_size))
            pending = reader.submit(load, parts[0]) if parts else None
            for index, batch in enumerate(parts):
                images = pending.result()
                if index + 1 < len(parts):
                    pending = reader.submit(load, parts[index + 1])
                # a conversation file's earlier (reference) turns reach a model tuned on conversations,
                # as in evaluation; a single-turn model answers each question alone
                queries = [answerer.query(image, row.question, row.history, decoding=decoding, strict=False,
                                          yes_no=yes_no) for image, row in zip(images, batch)]
                lines = []
                for row, query, answer in zip(batch, queries, answerer.answer(queries)):
                    choice = answer.choices[0]
                    metadata: dict[str, Any] = {"image": row.image_name, "finish_reason": choice.finish_reason}
                    if choice.yes_no is not None:
                        metadata["yes_no"] = choice.yes_no
                    lines.append(json.dumps(answer_record(row.question_id, query.instruction, choice.text,
                                                          model_id, metadata)) + "\n")
                handle.write("".join(lines))
                handle.flush()
                os.fsync(handle.fileno())
                bar.update(len(batch))
        bar.close()
    return len(todo)


def main(argv: Sequence[str] | None = None) -> int:
    from lavis.apps.inference.cli import add_model_arguments, load_answerer
    from lavis.apps.inference.questions import image_folder_rows, read_questions

    parser = argparse.ArgumentParser(prog="python -m lavis.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--questions", help="QUILT-VQA / LLaVA-Med question file (.jsonl) or conversation file (.json)")
    source.add_argument("--images", help="a folder of images, each asked --question")
    parser.add_argument("--question", help="with --images: the question asked of every image")
    parser.add_argument("--image-dir", default=None,
                        help="where the question file's images are (default: images/ beside it, else beside it)")
    parser.add_argument("--out", required=True, help="answer file (JSON lines, LLaVA-Med answer format)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model-id", default=None, help="model_id written in each answer (default: the model's name)")
    parser.add_argument("--yes-no", action="store_true",
                        help="add P(yes)/P(no) of closed questions to each answer's metadata (one more pass each)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    from lavis.common.logger import setup_logging
    from lavis.common.output_paths import os_error_text, writable_file

    setup_logging()
    try:
        if args.images and not args.question:
            raise DataError("--images needs --question (the question asked of every image)")
        if args.batch_size < 1:
            raise DataError(f"--batch-size must be >= 1, got {args.batch_size}")
        writable_file(args.out, "--out")  # before the model loads
        rows = image_folder_rows(args.images, args.question) if args.images else read_questions(args.questions,
                                                                                                 args.image_dir)
        repeated = [qid for qid, count in Counter(str(r.question_id) for r in rows).items() if count > 1]
        if repeated:
            raise DataError(f"{args.questions}: question ids must be unique, repeated: {repeated[:5]}")
        answerer, decoding = load_answerer(args, chat=False)
        count = predict(answerer, decoding, rows, Path(args.out), args.batch_size, args.model_id or answerer.name,
                        args.yes_no, not args.no_progress)
    except LavisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the disk filled up, the folder went read-only: what was written is kept
        print(f"error: {os_error_text(err, args.out)}", file=sys.stderr)
        return 2
    logger.info("%d answers written to %s (%d questions in all)", count, args.out, len(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
