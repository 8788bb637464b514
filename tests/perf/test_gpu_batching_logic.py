"""benchmarks/gpu_generate_batch.py's logic at tiny size on CPU (the GPU run uses the same code)."""

from __future__ import annotations


def test_batching_script_reports_every_batch_and_the_ratio():
    from benchmarks.gpu_generate_batch import measure

    result = measure("tiny", [1, 2], new_tokens=3, device="cpu")
    for batch in ("1", "2"):
        assert result[batch]["generate_answers_per_s"] > 0 and result[batch]["closed_answers_per_s"] > 0
        assert result[batch]["generate_peak_gib"] is None  # memory is measured on CUDA only
    ratio = result["2"]["generate_answers_per_s"] / result["1"]["generate_answers_per_s"]
    assert result["generate_batching_speedup"] == ratio
