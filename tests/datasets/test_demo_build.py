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


def test_demo_conversations_never_ask_an_attribute_twice_and_descriptions_stand_alone():
    from lavis.common.conversation import ConversationContract
    from lavis.datasets.demo.build import _as_conversations

    attributes = ["stain", "tissue_density", "stain", "detailed", "tissue_fraction", "tissue_density", "stain"]
    questions = [{"id": f"{tile}:{i}", "caption_id": tile, "attribute": a, "question": f"q{i} {a}", "answer": f"a{i}"}
                 for tile in ("t1", "t2") for i, a in enumerate(attributes)]
    single = _as_conversations(questions, ConversationContract(), seed=0)
    assert single == questions  # a single-turn model trains on single questions
    multi = ConversationContract(mode="multi_turn", history_format="qa_v1", max_turns=2)
    chained = _as_conversations(questions, multi, seed=0)
    assert sorted(q["id"] for q in chained) == sorted(q["id"] for q in questions)
    assert {q["caption_id"] for q in chained} == {"t1", "t2"}  # the tile's id is restored
    by_id = {q["id"]: q for q in questions}
    for q in chained:
        earlier = [h["question"] for h in q["history"]]
        assert len(earlier) <= 2
        if q["attribute"] == "detailed":
            assert not earlier
        # no earlier turn about the same attribute, none a description, all about the same tile
        asked = [next(o for o in by_id.values() if o["question"] == e and o["caption_id"] == q["caption_id"])
                 for e in earlier]
        assert all(o["attribute"] not in (q["attribute"], "detailed") for o in asked)
    assert any(q["history"] for q in chained)
