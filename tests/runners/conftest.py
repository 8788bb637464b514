"""Helpers to run the real entry points (``train.py``) in subprocesses, with and without torchrun."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "tests" / "plugins"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    args: list[str], nproc: int = 1, timeout: int = 300, check: bool = True, extra_path: Path | None = None
) -> subprocess.CompletedProcess:
    if nproc > 1:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1", f"--master_port={free_port()}", *args,
        ]
    else:
        cmd = [sys.executable, *args]
    proc = subprocess.run(cmd, cwd=REPO, env=child_env(extra_path), capture_output=True, text=True, timeout=timeout)
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
