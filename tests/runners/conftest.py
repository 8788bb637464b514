"""Helpers to run the real entry points (``train.py``) in subprocesses, with and without torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "tests" / "plugins"


def child_env(extra_path: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(extra_path)] if extra_path else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(PLUGINS), str(REPO), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def toy_config(tmp_path: Path, run: dict, model: dict | None = None, data: dict | None = None) -> Path:
    cfg = {
        "model": {"arch": "toy_regression", **(model or {})},
        "datasets": {"toy_regression": data or {}},
        "run": {
            "task": "instruction_tuning",
            "imports": ["toy_components"],
            "output_dir": str(tmp_path / "out"),
            "num_workers": 0,
            "progress_bar": False,
            "device": "cpu",
            "deterministic": True,
            **run,
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_entry(
    args: list[str], nproc: int = 1, timeout: int = 300, check: bool = True, extra_path: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    if nproc > 1:
        # --standalone: torchrun binds its own free port (no race with other jobs for a port
        # picked here and released before the launch)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    else:
        cmd = [sys.executable, *args]
    proc = subprocess.run(
        cmd, cwd=REPO, env={**child_env(extra_path), **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def toy_cfg(tmp_path):
    def make(run: dict, model: dict | None = None, data: dict | None = None) -> Path:
        return toy_config(tmp_path, run, model, data)

    return make


@pytest.fixture
def launch():
    """Run an entry point (``["train.py", ...]``) with python, or torchrun when nproc > 1."""
    return run_entry


@pytest.fixture
def entry_env():
    """(repo root, environment) for tests that drive a child process themselves."""
    return REPO, child_env()


# ---- a tiny BLIP-2 through the real builders, configs and entry points -----------------------------
# Every caption is five words that are whole BERT word pieces (seven Q-Former tokens with [DEC] and
# [SEP]) and every answer one word, so a per-rank token mean (ITG, the LLM loss) averaged over ranks
# equals the one-process mean over the world batch.
CAPTIONS = [
    "dense tissue with many nuclei",
    "loose tissue with few cells",
    "brown stain marks positive cells",
    "glands lined by tall cells",
    "fat cells beside dense tissue",
    "blood vessels in loose tissue",
    "large cells with pale nuclei",
    "dark nuclei in pink tissue",
]
QUESTIONS = [
    "what fills most of this image",
    "what is seen in this tile",
    "what does the stain mark",
    "what lies beside the vessels",
]
ANSWERS = ["cells", "nuclei", "glands", "tissue"]  # one sentencepiece each in the tiny T5 vocabulary


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    from lavis.models.llm.tiny import save_tiny_t5

    return save_tiny_t5(tmp_path_factory.mktemp("tiny_t5"), (CAPTIONS + QUESTIONS + ANSWERS) * 5, vocab_size=96)


def write_blip2_data(root: Path, images: int = 8) -> Path:
    """Real tissue crops (scikit-image's IHC slide) as PNG files, a Quilt-1M lookup CSV over them
    and a generate_instructions.py JSONL with one-word answers."""
    import csv
    import json

    from PIL import Image
    from skimage import data

    slide = data.immunohistochemistry()
    (root / "images").mkdir(parents=True)
    names = []
    for i in range(images):
        y, x = (i * 61) % 400, (i * 97) % 400
        names.append(f"tile_{i}.png")
        Image.fromarray(slide[y : y + 96, x : x + 96]).save(root / "images" / names[-1])
    with open(root / "quilt_1M_lookup.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["caption", "image_path", "subset", "split", "pathology"])
        for i, name in enumerate(names):
            writer.writerow([CAPTIONS[i % len(CAPTIONS)], name, "quilt", "train", "ihc"])
    records = [
        {"question": QUESTIONS[i % len(QUESTIONS)], "answer": ANSWERS[(i * 3) % len(ANSWERS)], "image": name,
         "caption": CAPTIONS[i % len(CAPTIONS)], "caption_id": i, "source": "template"}
        for i, name in enumerate(names)
    ]
    (root / "instructions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


@pytest.fixture
def blip2_cfg(tmp_path, minilm_dir, tiny_t5_dir):
    """``blip2_cfg(stage, name, run={}, model={})`` -> a run YAML for the tiny stage-1 BLIP-2
    (``stage1``: ITC + ITM + ITG on the Quilt-1M layout) or the tiny InstructBLIP-T5 (``stage2``:
    instruction tuning on generate_instructions.py output, through the feature cache)."""
    data = write_blip2_data(tmp_path / "data")

    def make(stage: str, name: str, run: dict | None = None, model: dict | None = None) -> Path:
        common_run = {
            "output_dir": str(tmp_path / name), "device": "cpu", "num_workers": 0, "progress_bar": False,
            "deterministic": True, "batch_size_train": 2, "max_epoch": 2, "init_lr": 1e-3, "warmup_steps": 2,
            "log_freq": 1, "seed": 7, "feature_cache_dir": str(tmp_path / "cache"),
        }
        qformer = {"tokenizer": str(minilm_dir)}
        if stage == "stage1":
            cfg = {
                "model": {"arch": "blip2", "model_type": "tiny", "qformer": qformer},
                "datasets": {"quilt1m": {
                    "storage": str(data), "image_dir": "images", "splits": {"train": "train", "val": None},
                    "vis_processor": {"train": {"name": "pathology_image_train", "image_size": 56, "min_scale": 0.6},
                                      "eval": {"name": "pathology_image_eval", "image_size": 56}},
                }},
                "run": {"task": "image_text_pretrain", **common_run},
            }
        else:
            cfg = {
                "model": {"arch": "blip2_t5_instruct", "model_type": "tiny", "qformer": qformer,
                          "llm": {"name_or_path": str(tiny_t5_dir)}},
                "datasets": {"clover_instructions": {
                    "storage": str(data), "image_dir": "images",
                    "vis_processor": {"train": {"name": "pathology_image_eval", "image_size": 56},
                                      "eval": {"name": "pathology_image_eval", "image_size": 56}},
                }},
                "run": {"task": "instruction_tuning", **common_run},
            }
        for key, value in (model or {}).items():
            cfg["model"][key] = {**cfg["model"].get(key, {}), **value} if isinstance(value, dict) else value
        cfg["run"].update(run or {})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make
