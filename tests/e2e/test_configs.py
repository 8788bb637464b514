"""Every shipped run config validates against the real registries and schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

from lavis.common.config import load_config
from lavis.runners import RunConfig
from lavis.runners.assemble import registries

REPO = Path(__file__).resolve().parents[2]
RUN_CONFIGS = sorted(
    [*(REPO / "configs" / "train").glob("*.yaml"), *(REPO / "configs" / "eval").glob("*.yaml")]
    + [REPO / "configs" / "demo" / f"{name}.yaml" for name in ("stage1", "stage2", "eval")]
)


def test_there_are_run_configs_for_both_stages_and_every_benchmark():
    names = {p.stem for p in RUN_CONFIGS}
    assert {"stage1_quilt1m", "stage1_quilt1m_wds", "stage2_clover_flant5xl", "stage2_clover_vicuna7b"} <= names
    for bench in ("quiltvqa", "quiltvqa_red", "llava_med", "pathvqa"):
        assert {f"{bench}_flant5xl", f"{bench}_vicuna7b"} <= names


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_run_config_validates(path):
    cfg = load_config(path, registries(), run_schema=RunConfig)
    assert cfg.model is not None and cfg.datasets
    if path.parent.name == "eval":
        assert cfg.run.task == ("captioning" if "captions" in path.stem else "vqa")
        assert cfg.run.test_splits == (["val"] if "captions" in path.stem else ["test"])
        assert cfg.task.generation.num_beams == 5 and cfg.task.generation.max_new_tokens == 40
        assert cfg.task.generation.min_new_tokens == 5 and cfg.task.generation.length_penalty is None
