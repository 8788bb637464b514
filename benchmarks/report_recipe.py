"""RESULTS.md's section on the GPU cost of the CLOVER recipe, from results_gpu_recipe.json
(``python -m benchmarks.gpu_recipe``), with issue 23's goals judged from the file only."""

from __future__ import annotations

from typing import Any

from benchmarks.report_table import table

GOALS = {"stage1_mfu": 0.40, "stage2_mfu": 0.25, "cached_vs_image_per_sample": 1.0}
WAITING = ("No GPU run recorded yet: `PYTHONPATH=. python -m benchmarks.gpu_recipe` on a CUDA machine writes "
           "`benchmarks/results_gpu_recipe.json`. Goals (stage-1 MFU >= 0.40 at batch 42, stage-2 MFU >= 0.25 "
           "at batch 8 per LLM, the cached path at least as fast per sample as the image path) are open.")


def verdict(value: float | None, goal: float) -> str:
    return "-" if value is None else ("yes" if value >= goal else "**no**")


def recipe_section(recipe: dict[str, Any] | None) -> list[str]:
    lines = ["## GPU cost of the CLOVER recipe (issue 23)", ""]
    if not recipe:
        return lines + [WAITING, ""]
    info, rows, hours = recipe["machine"], [], []
    for name, m in recipe["models"].items():
        s1, s2 = m["stage1"], m["stage2"]
        for variant in ("eager", "optimised"):
            rows.append([name, variant, s1[variant]["image"]["samples_per_s"], s1[variant]["image"]["mfu"],
                         s2[variant]["image"]["samples_per_s"], s2[variant]["image"]["mfu"],
                         s2[variant]["cached"]["samples_per_s"], s2[variant]["cached_vs_image_per_sample"],
                         s2[variant]["image"]["peak_memory_gib"]])
            h = m["recipe_gpu_hours"][variant]
            hours.append([name, variant, h["stage1"], h["stage2_from_images"], h["stage2_from_cache"], h["eval"],
                          h["total_without_cache"], h["total_with_cache"]])
    goals = []
    for name, m in recipe["models"].items():
        best = m["stage2"]["optimised"]
        goals += [[f"{name} stage-2 MFU, batch {m['stage2']['batch']}", best["image"]["mfu"], GOALS["stage2_mfu"],
                   verdict(best["image"]["mfu"], GOALS["stage2_mfu"])],
                  [f"{name} cached / image samples per s", best["cached_vs_image_per_sample"], 1.0,
                   verdict(best["cached_vs_image_per_sample"], GOALS["cached_vs_image_per_sample"])]]
    stage1 = next(iter(recipe["models"].values()))["stage1"]
    goals.insert(0, [f"stage-1 MFU, batch {stage1['batch']}", stage1["mfu"], GOALS["stage1_mfu"],
                     verdict(stage1["mfu"], GOALS["stage1_mfu"])])
    loader = recipe["stage1_data"]
    partial = [] if recipe.get("complete") else ["A partial run (stopped before its last phase): figures for the phases it reached.", ""]
    data_path = [] if not loader else [
        f"Stage-1 data path: {loader['median']:.0f} images/s ({loader['workers']} workers) against "
        f"{loader['step_images_per_s']['optimised']:.0f} consumed by the optimised step.", ""]
    return lines + [*partial,
        f"**{recipe['headline']}** (optimised step, stage 2 from the feature cache). Card: {info['gpu']} "
        f"(CUDA {info['cuda']}, torch {info['torch']}), git {info['git']}, {info['date']}; "
        f"{recipe['precision']}.", "",
        *table(["goal", "value", "target", "met"], goals), "",
        *table(["model", "step", "stage-1 samples/s", "stage-1 MFU", "stage-2 samples/s", "stage-2 MFU",
                "stage-2 cached samples/s", "cached / image", "stage-2 peak GiB"], rows), "",
        "GPU-hours of the recipe (counts in `recipe_counts`):", "",
        *table(["model", "step", "stage 1", "stage 2 (images)", "stage 2 (cache, with its build)", "eval",
                "total without cache", "total with cache"], hours), "", *data_path]
