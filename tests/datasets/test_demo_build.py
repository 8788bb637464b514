"""Rebuilding the demo data: same settings reuse it, new settings replace it whole."""

from lavis.datasets.demo.build import QuestionBudget, build_demo_data

BUDGET = QuestionBudget(closed_pairs=1, open_tuples=1, detailed=1)


def test_new_settings_rebuild_without_leaving_old_tiles(tmp_path):
    first = build_demo_data(tmp_path, budget=BUDGET, max_tiles=12, train_per_attribute=4)
    stale = tmp_path / "images" / "test" / "cmu1_he_128_0_0.png"  # a tile of some earlier settings
    stale.write_bytes(b"old")
    assert build_demo_data(tmp_path, budget=BUDGET, max_tiles=12, train_per_attribute=4)["stamp"] == first["stamp"]
    assert stale.exists()  # same settings: nothing rebuilt
    second = build_demo_data(tmp_path, budget=BUDGET, max_tiles=10, train_per_attribute=4)
    assert second["stamp"] != first["stamp"] and not stale.exists()
    written = {p.relative_to(tmp_path / "images").as_posix() for p in (tmp_path / "images").rglob("*.png")}
    assert written == {t["image"] for t in second["labels"]}
