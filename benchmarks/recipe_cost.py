"""GPU-hours of the whole CLOVER recipe from measured rates: what each phase processes (the
recipe's configs and the data facts in DESIGN.md) divided by how fast one GPU processes it.

- stage 1: Quilt-1M image-caption pairs (``quilt_1M_lookup.csv``, about 1.02M rows), batch 42,
  10 epochs; streamed from shards with random augmentation, so never from the feature cache;
- stage 2: CLOVER's ~45K instructions, batch 8, 30 epochs; from images, or from the feature
  cache, which first encodes each distinct image once (~45K, one per instruction at worst);
- evaluation: QUILT-VQA's 1,283 questions once (beam 5).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class RecipeCounts:
    stage1_samples: int = 1_020_000
    stage1_epochs: int = 10
    stage1_batch: int = 42
    stage2_samples: int = 45_000
    stage2_epochs: int = 30
    stage2_batch: int = 8
    cache_images: int = 45_000
    eval_questions: int = 1_283


def hours(items: float, per_second: float) -> float:
    return items / per_second / 3600


def recipe_hours(counts: RecipeCounts, stage1_per_s: float, stage2_per_s: float, stage2_cached_per_s: float,
                 cache_build_per_s: float, eval_answers_per_s: float | None) -> dict[str, float | None]:
    """GPU-hours per phase on one GPU, and the totals with and without the feature cache."""
    stage1 = hours(counts.stage1_samples * counts.stage1_epochs, stage1_per_s)
    stage2 = hours(counts.stage2_samples * counts.stage2_epochs, stage2_per_s)
    cache_build = hours(counts.cache_images, cache_build_per_s)
    stage2_cached = cache_build + hours(counts.stage2_samples * counts.stage2_epochs, stage2_cached_per_s)
    evaluation = hours(counts.eval_questions, eval_answers_per_s) if eval_answers_per_s else 0.0
    return {
        "stage1": stage1, "stage2_from_images": stage2, "cache_build": cache_build,
        "stage2_from_cache": stage2_cached, "eval": evaluation if eval_answers_per_s else None,
        "total_without_cache": stage1 + stage2 + evaluation,
        "total_with_cache": stage1 + stage2_cached + evaluation,
    }


def headline(models: dict[str, Any], gpu: str) -> str:
    """"the CLOVER recipe in N GPU-hours on <card>", per LLM, from the optimised step with the cache."""
    parts = [f"{name} {m['recipe_gpu_hours']['optimised']['total_with_cache']:.1f}" for name, m in models.items()]
    return f"the CLOVER recipe in {' / '.join(parts)} GPU-hours ({' / '.join(models)}) on {gpu}"
