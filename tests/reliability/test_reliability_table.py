"""The table in docs/reliability.md is the case list, and the case list is the tests."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _renderer():
    spec = importlib.util.spec_from_file_location("render_reliability_table", HERE / "render_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _collected(files: list[str]) -> set[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {line.strip() for line in proc.stdout.splitlines() if "::" in line}


def test_the_reliability_page_shows_the_current_case_list():
    renderer = _renderer()
    expected = renderer.render(renderer.load_cases())
    actual = renderer.current_block(renderer.PAGE.read_text())
    assert actual == expected, "docs/reliability.md's table is stale: run python tests/reliability/render_table.py"


def test_every_case_names_a_real_test_and_every_test_here_has_a_case():
    cases = _renderer().load_cases()
    files = sorted({case.test.split("::")[0] for case in cases} | {str(p.relative_to(REPO)) for p in HERE.glob("test_*.py")})
    collected = _collected(files)
    missing = [case.test for case in cases if case.test not in collected]
    assert not missing, f"cases naming tests that do not exist: {missing}"
    listed = {case.test.split("[")[0] for case in cases}
    here = {node.split("[")[0] for node in collected if node.startswith("tests/reliability/")}
    unlisted = sorted(here - listed - {f"tests/reliability/{Path(__file__).name}::{name}" for name in
                                       ("test_the_reliability_page_shows_the_current_case_list",
                                        "test_every_case_names_a_real_test_and_every_test_here_has_a_case")})
    assert not unlisted, f"tests without a case in tests/reliability/cases.py (so not in docs/reliability.md): {unlisted}"
