"""A QUILT-VQA evaluation: the real evaluation (``evaluate.py``'s runner path) against
transformers' ``InstructBlipForConditionalGeneration.generate`` over the same questions in file
order, with the same weights, CLOVER's generation settings (beam 5, 5-40 new tokens, length
penalty -1) and batch size.

    python -m benchmarks.eval_throughput --size base --questions 985 --batch 16   # the full size
    python -m benchmarks.eval_throughput --size base --questions 40 --batch 8     # make bench

Data: QUILT-VQA's release layout (``quiltvqa_test_wo_ans.jsonl``, ``quiltvqa_test_w_ans.json``,
``images/``), 343 of 985 questions closed (the same share at any ``--questions``), one 1280x720
JPEG frame per question (QUILT-VQA images are video frames). Question lengths are assumed
log-normal: open median 14 words (4-60), closed median 10 (4-40).

Contenders, alternated (ABBA), each a whole evaluation:

- ``ours``: the runner's evaluation with its defaults - questions sorted by prompt length, closed
  questions answered by likelihood (``closed_method: rank``) in batches of their own, beam search
  with per-sample cross-attention keys/values, the frozen-encoder feature cache built from
  scratch inside the timed run (``cold``), 2 loader workers;
- ``ours_warm_cache``: the same when the cache exists (a re-evaluation, or the test split of a
  training run that validated on it);
- ``ours_generate_all``: sorted, but closed questions generated too (``closed_method: generate``):
  what the shipped configs do, for the published protocols' generation;
- ``hf``: a DataLoader (2 workers, file order) that decodes each image through HF's
  ``BlipImageProcessor`` and tokenises, then ``generate`` on every question.

Answers are compared as token ids (the benchmark tokenizer cannot spell a random-weight
model's ids): ``same_open_answers`` counts the open questions where ours and HF's agree.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Dataset

from benchmarks.data_files import write_frames
from benchmarks.sizes import CORPUS, SIZES, build_ours, hf_with_weights_of, make_assets, our_overrides
from benchmarks.stage2_epoch import FRAME
from benchmarks.timing import alternate, command_line, emit
from benchmarks.train_step import WORK

QUILT_QUESTIONS, QUILT_CLOSED = 985, 343
GENERATION = {"num_beams": 5, "max_new_tokens": 40, "min_new_tokens": 5, "length_penalty": -1.0}


def question_words(count: int, seed: int = 0) -> list[tuple[int, bool]]:
    """(words, closed) per question, in file order; closed ones spread through the file."""
    rng = np.random.default_rng(seed)
    closed_count = round(count * QUILT_CLOSED / QUILT_QUESTIONS)
    closed = set(rng.choice(count, closed_count, replace=False).tolist())
    out = []
    for i in range(count):
        median, high = (10, 40) if i in closed else (14, 60)
        out.append((int(np.clip(round(rng.lognormal(np.log(median), 0.5)), 4, high)), i in closed))
    return out


def write_quilt_vqa(root: Path, count: int) -> Path:
    words = sorted({w for line in CORPUS for w in line.split()})
    rng = np.random.default_rng(1)
    frames = write_frames(root / "frames", [FRAME], count)
    (root / "images").mkdir(parents=True, exist_ok=True)
    questions, answers = [], []
    for i, ((length, closed), frame) in enumerate(zip(question_words(count), frames)):
        image = root / "images" / frame.name
        if not image.exists():
            image.symlink_to(frame)
        text = " ".join(rng.choice(words, length)) + "?"
        questions.append({"question_id": i, "image": frame.name, "text": text})
        yes = bool(i % 2)
        answers.append({"id": i, "answer": ("Yes, " if yes else "No, ") + " ".join(rng.choice(words, 12)),
                        "answer_type": "CLOSED" if closed else "OPEN",
                        **({"yes_no_answer": "yes" if yes else "no"} if closed else {})})
    (root / "quiltvqa_test_wo_ans.jsonl").write_text("\n".join(json.dumps(q) for q in questions) + "\n")
    (root / "quiltvqa_test_w_ans.json").write_text(json.dumps(answers))
    return root


def ids_text(ids: torch.Tensor, special: tuple[int, ...]) -> list[str]:
    """Generated ids as text, special tokens dropped: the answer both sides are compared on."""
    return [" ".join(str(t) for t in row.tolist() if t not in special) for row in ids]


# ---- ours ----------------------------------------------------------------------------------------
def our_config(size: str, root: Path, out: Path, name: str, batch: int, workers: int, closed_method: str) -> Any:
    from lavis.cli import build_parser, load

    processor = {"name": "pathology_image_eval", "image_size": SIZES[size].vision.image_size}
    cfg = {
        "model": {"arch": SIZES[size].arch, "model_type": "tiny",
                  **our_overrides(SIZES[size], make_assets(WORK / "assets"), "fp32", "fp32")},
        "datasets": {"quilt_vqa": {"storage": str(root), "vis_processor": {"eval": processor}}},
        "run": {"task": "vqa", "output_dir": str(out / name), "device": "cpu", "seed": 0, "evaluate": True,
                "batch_size_eval": batch, "num_workers": workers, "progress_bar": False, "test_splits": ["test"],
                "protocols": ["quilt"], "closed_method": closed_method, "generation": GENERATION,
                "feature_cache_dir": str(out / f"cache_{name}")},
    }
    path = out / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return load(build_parser("bench", None).parse_args(["--cfg-path", str(path)]))


def our_evaluation(cfg: Any, model: torch.nn.Module, cold: bool) -> dict[str, str]:
    """The runner's evaluation (feature cache built inside when ``cold``); answers by question id."""
    from lavis.runners import RUNNERS
    from lavis.tasks import TASKS

    if cold and Path(cfg.run.feature_cache_dir).exists():
        shutil.rmtree(cfg.run.feature_cache_dir)
    task = TASKS.get(cfg.run.task)(cfg.task)
    RUNNERS.get(cfg.run.runner)(cfg, task, model, task.build_datasets(cfg)).evaluate_only()
    path = Path(cfg.run.output_dir) / "quilt_vqa_test_eval_answers.jsonl"
    return {str(r["question_id"]): r["text"] for r in map(json.loads, path.read_text().splitlines())}


# ---- transformers' generate in file order -------------------------------------------------------------
class QuiltQuestions(Dataset):
    def __init__(self, root: Path, image_size: int) -> None:
        from transformers import BlipImageProcessor

        from lavis.processors.image_processors import CLIP_MEAN, CLIP_STD

        self.root = root
        self.rows = [json.loads(line) for line in (root / "quiltvqa_test_wo_ans.jsonl").read_text().splitlines()]
        self.processor = BlipImageProcessor(size={"height": image_size, "width": image_size},
                                            image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), resample=3)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, str]:
        from PIL import Image

        row = self.rows[index]
        with Image.open(self.root / "images" / row["image"]) as image:
            pixels = self.processor(image.convert("RGB"), return_tensors="pt").pixel_values[0]
        return row["question_id"], pixels, row["text"]


class HFGenerate:
    def __init__(self, hf: Any, ours: Any, root: Path, image_size: int, batch: int, workers: int) -> None:
        self.model, self.ours = hf.eval(), ours  # ours lends its tokenizers: the same ids on both sides
        self.special = (ours.bridge.tokenizer.pad_token_id, ours.bridge.tokenizer.eos_token_id)
        self.loader = DataLoader(QuiltQuestions(root, image_size), batch_size=batch, shuffle=False,
                                 num_workers=workers, collate_fn=self.collate)

    def collate(self, items: list[tuple[int, torch.Tensor, str]]) -> tuple[list[int], dict[str, torch.Tensor]]:
        ids, pixels, questions = zip(*items)
        ours = self.ours
        q = ours.tokenizer(list(questions), padding="longest", truncation=True, max_length=ours.cfg.max_txt_len,
                           return_tensors="pt")
        prompt = ours.bridge.tokenizer(list(questions), padding="longest", truncation=True,
                                       max_length=ours.cfg.max_txt_len, return_tensors="pt")
        queries = ours.query_tokens.shape[1]
        placeholders = torch.full((len(items), queries), self.model.config.image_token_id, dtype=prompt.input_ids.dtype)
        return list(ids), {
            "pixel_values": torch.stack(pixels), "qformer_input_ids": q.input_ids,
            "qformer_attention_mask": q.attention_mask,
            "input_ids": torch.cat([placeholders, prompt.input_ids], dim=1),
            "attention_mask": torch.cat([torch.ones_like(placeholders), prompt.attention_mask], dim=1),
        }

    @torch.no_grad()
    def __call__(self) -> dict[str, str]:
        answers = {}
        for ids, inputs in self.loader:
            out = self.model.generate(**inputs, **GENERATION, do_sample=False,
                                      pad_token_id=self.special[0], eos_token_id=self.special[1])
            answers.update(zip(map(str, ids), ids_text(out, self.special)))
        return answers


def run(size: str = "base", questions: int = 40, batch: int = 8, workers: int = 2, rounds: int = 2,
        threads: int = 1, contenders: list[str] | None = None) -> dict[str, Any]:
    torch.set_num_threads(threads)
    out = WORK / f"eval_{size}_{questions}"
    root = write_quilt_vqa(out / "data", questions)
    torch.manual_seed(0)
    model = build_ours(SIZES[size], make_assets(WORK / "assets")).eval()
    hf = hf_with_weights_of(model, SIZES[size])
    special = (model.bridge.tokenizer.pad_token_id, model.bridge.tokenizer.eos_token_id)
    model.bridge.decode = lambda ids: ids_text(ids, special)  # compare token ids (see module doc)
    configs = {name: our_config(size, root, out, name, batch, workers, method)
               for name, method in (("ours", "rank"), ("ours_warm_cache", "rank"), ("ours_generate_all", "generate"))}
    answers: dict[str, dict[str, str]] = {}

    def ours(name: str, cold: bool):
        def call() -> None:
            answers[name] = our_evaluation(configs[name], model, cold)

        return call

    def theirs() -> None:
        answers["hf"] = HFGenerate(hf, model, root, SIZES[size].vision.image_size, batch, workers)()

    calls = {"ours": ours("ours", True), "ours_warm_cache": ours("ours_warm_cache", False),
             "ours_generate_all": ours("ours_generate_all", True), "hf": theirs}
    calls = {k: v for k, v in calls.items() if contenders is None or k in contenders or k in ("ours", "hf")}
    start = time.perf_counter()
    calls.get("ours_warm_cache", lambda: None)()  # builds that contender's cache once, untimed
    timings = alternate(calls, items_per_call=questions, rounds=rounds, calls_per_round=1, warmup=0)
    kinds = {str(i): closed for i, (_, closed) in enumerate(question_words(questions))}
    open_ids = [i for i, closed in kinds.items() if not closed]
    same = sum(answers["ours"][i] == answers["hf"][i] for i in open_ids)
    seconds = {name: questions / t["median"] for name, t in timings.items()}
    return {
        "size": size, "questions": questions, "closed": sum(kinds.values()), "batch": batch, "num_workers": workers,
        "threads": threads, "rounds": rounds, "generation": GENERATION, "frame_px": list(FRAME),
        "question_words": {"median": float(np.median([w for w, _ in question_words(questions)])),
                           "max": max(w for w, _ in question_words(questions))},
        "seconds": seconds, "answers_per_s": timings,
        "speedup_vs_hf": seconds["hf"] / seconds["ours"],
        "cpu_speedup_vs_hf": timings["ours"]["cpu_median"] / timings["hf"]["cpu_median"],
        **({"speedup_vs_hf_warm_cache": seconds["hf"] / seconds["ours_warm_cache"]} if "ours_warm_cache" in seconds else {}),
        **({"speedup_vs_hf_generate_all": seconds["hf"] / seconds["ours_generate_all"]}
           if "ours_generate_all" in seconds else {}),
        "same_open_answers": same, "open_questions": len(open_ids),
        "closed_answers": sorted({answers["ours"][i] for i, closed in kinds.items() if closed}),
        "wall_s": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__, size="base", batch=8, rounds=2, threads=1)
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--contenders", nargs="+", default=None,
                        choices=["ours", "ours_warm_cache", "ours_generate_all", "hf"],
                        help="which to time (ours and hf always)")
    args = parser.parse_args(argv)
    emit(run(args.size, args.questions, args.batch, args.workers, args.rounds, args.threads, args.contenders),
         args.out)


if __name__ == "__main__":
    main()
