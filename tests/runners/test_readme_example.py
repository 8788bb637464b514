"""The "Adding a component" example (docs/extending.md) runs exactly as printed: its code blocks
are written to the files their first line names, and its command is run from the folder that holds
them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_adding_a_component_example_runs_as_printed(tmp_path, entry_env):
    section = (REPO / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```(python|yaml)\n(.*?)```", section, flags=re.S)
    assert [language for language, _ in blocks] == ["python", "yaml"]
    for _, code in blocks:
        target = re.match(r"# (\S+)\n", code).group(1)  # the block's first line names its file
        (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / target).write_text(code)
    command = re.search(r"`(python \S*train\.py --cfg-path my_run\.yaml)`", section).group(1).split()
    assert command[1] == "/path/to/repo/train.py"
    command = [sys.executable, str(REPO / "train.py"), *command[2:]]
    proc = subprocess.run(command, cwd=tmp_path, env=entry_env[1], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    out = tmp_path / "runs" / "my_run"
    evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["type"] == "eval"]
    accuracies = [r["accuracy"] for r in evals]
    assert len(accuracies) == 8  # one validation per epoch
    assert max(accuracies) >= 80.0, accuracies  # the stain is learnable: the example does something real
    assert (out / "checkpoints" / "best").is_dir()
