"""A slide job killed mid-way continues where it stopped and ends with the same tiles file as an
uninterrupted run; two processes under torchrun answer every tile once, like one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from lavis.apps.slides import TissueSettings, analyze_slide
from lavis.apps.slides.outputs import read_table
from lavis.apps.slides.plan import parse_region

from .conftest import fast_settings

DENSE = "Is the tissue in this image dense?"
REGION = "0,1100,2220,1867"  # the lower part of the slide: fewer tiles, same code
REPO = __import__("pathlib").Path(__file__).resolve().parents[3]


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400, **kwargs)
    except subprocess.TimeoutExpired as err:  # show where it stood
        tail = (err.stderr or b"")[-3000:]
        pytest.fail(f"timed out: {' '.join(cmd[:6])} ...\n{tail.decode() if isinstance(tail, bytes) else tail}")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "CUDA_VISIBLE_DEVICES": ""}


def test_killed_job_resumes_to_the_same_tiles_file(stage2, stage2_run, pyramid, tmp_path):
    slide, out = pyramid[0], tmp_path / "killed"
    # A real SIGKILL after the third batch, with tiles read by two DataLoader worker processes.
    script = textwrap.dedent(f"""
        import os, signal, torch
        torch.set_num_threads(1)
        from lavis.models import load_pretrained
        from lavis.apps.slides import Generation, SlideSettings, TissueSettings, analyze_slide
        loaded = load_pretrained({str(stage2_run)!r})
        done = []
        def on_batch(tiles):
            done.append(tiles)
            if len(done) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        settings = SlideSettings(mpp=0.5, batch=4, workers=2, progress=False, top_k=4,
                                 tissue=TissueSettings(max_side=768), generation=Generation(max_new_tokens=3))
        analyze_slide(loaded, {str(slide)!r}, [{DENSE!r}], {str(out)!r}, settings=settings, on_batch=on_batch)
    """)
    proc = _run([sys.executable, "-c", script])
    assert proc.returncode == -9, proc.stderr[-2000:]
    (folder,) = [p for p in out.iterdir() if p.is_dir() and p.name.startswith("closed-")]
    parts = sorted(p.name for p in (folder / ".parts").glob("[0-9]*.json"))
    assert parts == ["000000000-000004.json", "000000004-000004.json", "000000008-000004.json"]
    assert not (folder / "summary.json").exists() and not (folder / "tiles.parquet").exists()
    assert (out / ".lock").exists()  # left by the killed process; the rerun takes it over

    settings = fast_settings(mpp=0.5, batch=4)
    resumed = analyze_slide(stage2, slide, [DENSE], out, settings=settings)[folder.name]
    assert resumed["tiles"]["this_run"] == resumed["tiles"]["analysed"] - 12
    assert not (folder / ".parts").exists() and not list(out.rglob("*.tmp"))
    clean = tmp_path / "clean"
    analyze_slide(stage2, slide, [DENSE], clean, settings=settings)
    pd.testing.assert_frame_equal(read_table(folder), read_table(clean / folder.name), check_exact=True)
    assert (folder / "regions.geojson").read_bytes() == (clean / folder.name / "regions.geojson").read_bytes()


def test_two_processes_equal_one(stage2, stage2_run, svs_path, tmp_path, free_port):
    questions = [DENSE, "What is shown?"]
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "lavis.apps.slides", "--model", str(stage2_run), "--slide", str(svs_path),
           "--out", str(two), "--mpp", "2.0", "--region", REGION, "--batch", "4", "--workers", "1",
           "--max-new-tokens", "3", "--top-k", "4", "--quiet", "--device", "cpu"]
    for q in questions:
        cmd += ["--question", q]
    proc = _run(cmd, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = tmp_path / "one"
    same_as_cli = fast_settings(mpp=2.0, batch=4, region=parse_region(REGION), tissue=TissueSettings())  # CLI defaults
    summaries = analyze_slide(stage2, svs_path, questions, one, settings=same_as_cli)
    for folder, summary in summaries.items():
        two_summary = json.loads((two / folder / "summary.json").read_text())
        assert two_summary["settings"]["processes"] == 2 and summary["settings"]["processes"] == 1
        assert two_summary["tiles"]["this_run"] == two_summary["tiles"]["analysed"] == summary["tiles"]["analysed"]
        pd.testing.assert_frame_equal(read_table(two / folder), read_table(one / folder), check_exact=False,
                                      rtol=1e-5, atol=1e-6)
