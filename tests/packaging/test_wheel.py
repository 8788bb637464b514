"""The wheel stands alone: built from the sources, installed (no dependencies re-installed) into a
fresh virtual environment, and used from an empty folder - configs, templates and prices come
from the package, the console scripts train and evaluate a registered model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "tests" / "plugins" / "toy_components.py"
SCRIPTS = ("lavis-train", "lavis-train-stage1", "lavis-evaluate", "lavis-generate-instructions", "lavis-serve",
           "lavis-chat", "lavis-predict", "lavis-slides", "lavis-doctor")  # fmt: skip


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(venv folder, environment without the checkout on PYTHONPATH)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"  # a copy: the build writes build/ and *.egg-info beside setup.py
    for name in ("lavis", "configs"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LAVIS_CONFIG_ROOT")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(source)], work, env)
    wheel = next((work / "dist").glob("clover_lavis-*.whl"))
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work, env)
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work, env).stdout.strip())
    # The dependencies come from this environment (no torch re-install); .pth files inside an
    # added folder are not processed, so its editable `lavis` stays invisible.
    (site / "main_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], work, env)
    return venv, env


@pytest.mark.slow
def test_package_data_and_entry_points_without_the_repository(installed, tmp_path):
    venv, env = installed
    probe = """
import json, lavis
from importlib.metadata import entry_points
from lavis.common.errors import LavisError
from lavis.common.paths import config_root, user_config_file
from lavis.models import load_model
scripts = {ep.name: ep.load().__module__ for ep in entry_points(group="console_scripts") if ep.name.startswith("lavis-")}
try:
    load_model("blip2_t5_instruct", "flant5xl")
    error = None
except LavisError as err:
    error = str(err)
stage1 = str(user_config_file("configs/train/stage1_quilt1m.yaml"))  # a documented path, from any folder
print(json.dumps({"lavis": lavis.__file__, "configs": str(config_root()), "scripts": scripts, "error": error,
                  "stage1": stage1}))
"""
    out = json.loads(run([str(venv / "bin" / "python"), "-c", probe], tmp_path, env).stdout.strip().splitlines()[-1])
    assert Path(out["lavis"]).is_relative_to(venv) and Path(out["configs"]).is_relative_to(venv)
    assert Path(out["stage1"]).is_file() and Path(out["stage1"]).is_relative_to(venv)
    assert sorted(out["scripts"]) == sorted(SCRIPTS)
    # The config is found; only the weights are missing, and the message names them.
    assert "config file" not in out["error"] and "eva_vit_g.pth" in out["error"], out["error"]
    assert all((venv / "bin" / name).is_file() for name in SCRIPTS)
    (tmp_path / "captions.csv").write_text("caption,image_path\nGlands lined by columnar epithelium.,a.jpg\n")
    dry = run([str(venv / "bin" / "lavis-generate-instructions"), "--captions", "captions.csv", "--out", "instr",
               "--mode", "both", "--dry-run", "--no-progress"], tmp_path, env)  # fmt: skip
    estimate = json.loads(dry.stdout)  # the packaged prompt protocol, price table and template bank
    assert estimate["estimated_cost_usd"] > 0 and estimate["template_instructions"] == 1


@pytest.mark.slow
def test_console_scripts_train_and_evaluate_a_registered_model_from_an_empty_folder(installed, tmp_path):
    venv, env = installed
    shutil.copy2(PLUGIN, tmp_path / "toy_components.py")  # the user's own module, in the folder they run from
    common = {"imports": ["toy_components"], "num_workers": 0, "progress_bar": False, "device": "cpu"}
    train_cfg = {"model": {"arch": "toy_regression"}, "datasets": {"toy_regression": {}},
                 "run": {"task": "instruction_tuning", "output_dir": "train_out", "max_epoch": 1, **common}}
    eval_cfg = {"model": {"arch": "toy_vqa"}, "datasets": {"toy_vqa": {"num_questions": 5}},
                "run": {"task": "vqa", "output_dir": "eval_out", "test_splits": ["test"], "batch_size_eval": 2,
                        "generation": {"num_beams": 1}, **common}}  # fmt: skip
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train_cfg))
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(eval_cfg))
    run([str(venv / "bin" / "lavis-train"), "--cfg-path", "train.yaml"], tmp_path, env)
    assert (tmp_path / "train_out" / "checkpoints" / "last").is_dir()
    run([str(venv / "bin" / "lavis-evaluate"), "--cfg-path", "eval.yaml"], tmp_path, env)
    rows = (tmp_path / "eval_out" / "toy_vqa_test_eval_answers.jsonl").read_text().splitlines()
    assert len(rows) == 5
