"""``python -m benchmarks.gpu_recipe`` at tiny size on CPU: every phase runs eager and optimised,
the JSON has the keys DESIGN.md section 8 names, RESULTS.md's section renders from it; the
GPU-hours arithmetic on known rates.

Compilation itself is switched off here (``torch._dynamo`` disabled: ``model.compile`` leaves the
blocks marked, and they run eager), since tracing every block variant of three models takes
minutes on a shared 2-core CPU; that compiled blocks compute the eager step is
tests/models/test_compiled_blocks.py's claim, and the GPU run's ``compiled_vs_eager``."""

from __future__ import annotations

import json

import pytest

TINY = ["--device", "cpu", "--sizes", "tiny", "--stage1-batch", "3", "--stage2-batch", "2", "--cycle", "2",
        "--rounds", "1", "--warmup-passes", "1", "--eval-questions", "3", "--eval-batch", "2", "--new-tokens", "3",
        "--loader-images", "8", "--loader-side", "64", "--loader-workers", "0"]


def test_the_recipe_script_writes_eager_and_optimised_figures_for_every_phase(tmp_path):
    import torch._dynamo

    from benchmarks.gpu_recipe import main

    out, profile = tmp_path / "recipe.json", tmp_path / "profile"
    try:
        with torch._dynamo.config.patch(disable=True):
            main([*TINY, "--out", str(out), "--profile", str(profile)])
    finally:
        torch._dynamo.reset()  # frames dynamo declined while disabled stay marked until a reset
    result = json.loads(out.read_text())
    assert {"gpu", "cuda", "torch", "git", "date"} <= set(result["machine"])
    model = result["models"]["tiny"]
    assert set(model) == {"stage1", "stage2", "eval", "recipe_gpu_hours"}
    for phase, paths in (("stage1", ["image"]), ("stage2", ["image", "cached"])):
        figures = model[phase]
        assert {"batch", "samples_per_s", "mfu", "peak_memory_gib"} <= set(figures)
        assert figures["batch"] == (3 if phase == "stage1" else 2)
        assert figures["compiled_blocks"] > 0 and figures["compiled_vs_eager"]["equal"]
        for variant in ("eager", "optimised"):
            assert figures[variant]["warmup_seconds"] > 0 and figures[variant]["compiled_graphs"] >= 0
            for path in paths:
                assert figures[variant][path]["host_syncs_per_pass"] is None  # counted on CUDA only
                assert figures[variant][path]["samples_per_s"] > 0 and figures[variant][path]["mfu"] is None
            assert (profile / f"{phase}{'' if phase == 'stage1' else '_tiny'}_{variant}_image.json").exists()
        assert figures["samples_per_s"] == figures["optimised"]["image"]["samples_per_s"]
    assert model["stage2"]["optimised"]["cached_vs_image_per_sample"] > 0
    assert model["stage2"]["optimised"]["cache_build_images_per_s"] > 0
    assert model["eval"]["eager"]["sorted_rank_closed"]["answers_per_s"] > 0 and model["eval"]["answers_per_s"] > 0
    for hours in model["recipe_gpu_hours"].values():
        assert hours["total_with_cache"] == pytest.approx(hours["stage1"] + hours["stage2_from_cache"] + hours["eval"])
    loader = result["stage1_data"]
    assert loader["median"] > 0 and set(loader["keeps_up"]) == {"eager", "optimised"}
    assert result["complete"] and result["recipe_counts"]["stage2_epochs"] == 30 and "GPU-hours" in result["headline"]

    from benchmarks.report_recipe import recipe_section

    section = "\n".join(recipe_section(result))
    assert result["headline"] in section and "| stage-1 MFU, batch 3 | - | 0.4 | - |" in section  # no peak on CPU
    assert "No GPU run recorded yet" in "\n".join(recipe_section(None))

    main(["--combine", str(out), str(out), "--out", str(tmp_path / "both.json")])  # two one-LLM runs -> one file
    both = json.loads((tmp_path / "both.json").read_text())
    assert both["complete"] and set(both["models"]) == {"tiny"} and both["headline"] == result["headline"]
    with pytest.raises(SystemExit, match="no such results file: .*missing.json"):
        main(["--combine", str(tmp_path / "missing.json")])


def test_recipe_hours_divide_the_recipe_by_the_measured_rates():
    from benchmarks.recipe_cost import RecipeCounts, recipe_hours

    counts = RecipeCounts()
    hours = recipe_hours(counts, stage1_per_s=100.0, stage2_per_s=50.0, stage2_cached_per_s=75.0,
                         cache_build_per_s=500.0, eval_answers_per_s=None)
    assert hours["stage1"] == pytest.approx(1_020_000 * 10 / 100 / 3600)  # 28.3 h
    assert hours["stage2_from_images"] == pytest.approx(45_000 * 30 / 50 / 3600)  # 7.5 h
    assert hours["stage2_from_cache"] == pytest.approx(45_000 / 500 / 3600 + 45_000 * 30 / 75 / 3600)
    assert hours["eval"] is None and hours["total_without_cache"] == pytest.approx(hours["stage1"] + 7.5)


def test_the_script_refuses_to_run_without_cuda_unless_told_cpu(monkeypatch):
    import torch

    from benchmarks.gpu_recipe import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device"):
        main([])
