"""CLOVER instruction files and the user's own image folders (k-shot, split by slide)."""

from collections import Counter

import pytest

from lavis.common.errors import ConfigError, DataError


def _instruction(question, answer, image, caption_id, source="generated", **extra):
    return {"question": question, "answer": answer, "image": image, "caption": "cap",
            "caption_id": caption_id, "source": source, **extra}  # fmt: skip


def test_clover_instructions_jsonl(tmp_path, write, build):
    root = tmp_path / "clover"
    write.jsonl(root / "instructions.jsonl", [
        _instruction("What cells are visible?", "Atypical melanocytes.", "v1/a.jpg", "q17"),
        _instruction("Describe this image in detail.", "Gleason 3+4 glands.", "v1/a.jpg", "q17", source="template"),
        _instruction("Is there necrosis?", "No", "v2/b.jpg", 18, answer_type="CLOSED"),
    ])  # fmt: skip
    write.image_file(root / "quilt_1m" / "v1" / "a.jpg")
    write.image_file(root / "quilt_1m" / "v2" / "b.jpg")
    train = build("clover_instructions", storage=str(root))["train"]
    assert train.column("question_id") == ["q17/1", "q17/2", "18/3"]
    assert train.column("answer_type") == ["OPEN", "OPEN", "CLOSED"]
    assert train.column("image_id") == [0, 0, 1]
    item = train[1]
    assert item["text_output"] == "Gleason 3+4 glands." and item["image"].shape == (3, 224, 224)
    generated = build("clover_instructions", storage=str(root), sources=["generated"])["train"]
    assert generated.column("question_id") == ["q17/1", "18/3"]


def test_clover_instructions_llava_export_and_bad_record(tmp_path, write, build):
    root = tmp_path / "clover"
    write.json(root / "export.json", [{"id": "q1", "image": "a.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "Skin."}]}])  # fmt: skip
    train = build("clover_instructions", storage=str(root), files={"train": "export.json"})["train"]
    assert train.column("text_input") == ["What is shown?"] and train.column("answer") == ["Skin."]
    write.jsonl(root / "instructions.jsonl", [_instruction("q", "a", "a.jpg", 1), {"question": "q", "image": "a.jpg"}])
    with pytest.raises(DataError, match=r"instructions\.jsonl: line 2, field 'answer': missing"):
        build("clover_instructions", storage=str(root))
    # blank lines count: the message names the file's own line
    path = root / "instructions.jsonl"
    path.write_text("\n" + path.read_text())
    with pytest.raises(DataError, match=r"instructions\.jsonl: line 3, field 'answer': missing"):
        build("clover_instructions", storage=str(root))


@pytest.fixture()
def clinical_root(tmp_path, write):
    """label/slide layout: 6 tumour slides and 4 normal slides, 3 images each."""
    root = tmp_path / "clinical"
    for label, slides in (("tumor", 6), ("normal", 4)):
        for slide in range(slides):
            for tile in range(3):
                write.image_file(root / label / f"{label[0]}slide{slide}" / f"tile{tile}.png", size=(24, 24))
    (root / "tumor" / "README.txt").write_text("not an image")
    return root


def _slides(dataset):
    return {path.split("/")[1] for path in dataset.column("image_path")}


def test_split_by_slide_without_overlap(clinical_root, build):
    splits = build("image_folder_vqa", storage=str(clinical_root), split_fractions={"train": 0.5, "val": 0.0, "test": 0.5})
    assert set(splits) == {"train", "test"}
    train, test = _slides(splits["train"]), _slides(splits["test"])
    assert not train & test and len(train | test) == 10
    assert sum(s.startswith("t") for s in train) == 3 and sum(s.startswith("n") for s in train) == 2  # stratified
    item = splits["test"][0]
    assert item["text_input"] == "Is there tumor in this image?" and item["answer"] in ("yes", "no")
    assert item["answer_type"] == "CLOSED" and item["yes_no_answer"] == item["answer"]
    again = build("image_folder_vqa", storage=str(clinical_root), split_fractions={"train": 0.5, "val": 0.0, "test": 0.5})
    assert again["train"].column("image_path") == splits["train"].column("image_path")  # seeded
    other = build("image_folder_vqa", storage=str(clinical_root), seed=1, split_fractions={"train": 0.5, "val": 0.0, "test": 0.5})
    assert _slides(other["train"]) != train


def test_k_shot_per_class(clinical_root, build):
    splits = build("image_folder_vqa", storage=str(clinical_root), k_shot=4)
    answers = Counter(splits["train"].column("answer"))
    assert answers == {"yes": 4, "no": 4}
    assert len(splits["test"]) == len(_slides(splits["test"])) * 3  # k-shot only thins train
    other = build("image_folder_vqa", storage=str(clinical_root), k_shot=4, seed=5)
    assert other["train"].column("image_path") != splits["train"].column("image_path")


def test_slide_label_layout_and_several_templates(tmp_path, write, build):
    root = tmp_path / "clinical"
    for slide in ("s1", "s2"):
        for label in ("tumor", "normal"):
            write.image_file(root / slide / label / "t.jpg", size=(20, 20))
    templates = [
        {"question": "Is there tumor in this image?", "answers": {"tumor": "yes", "normal": "no"}},
        {"question": "What tissue is this?", "answers": {"tumor": "carcinoma", "normal": "normal mucosa"}},
    ]
    splits = build("image_folder_vqa", storage=str(root), layout="slide/label", templates=templates,
                   split_fractions={"train": 1.0, "val": 0.0, "test": 0.0})  # fmt: skip
    train = splits["train"]
    assert len(train) == 8
    assert Counter(train.column("answer_type")) == {"CLOSED": 4, "OPEN": 4}
    assert train.column("question_id")[:2] == ["s1/normal/t.jpg#0", "s1/normal/t.jpg#1"]


def test_label_without_answer_and_bad_fractions(clinical_root, build):
    templates = [{"question": "Tumor?", "answers": {"tumor": "yes"}}]
    with pytest.raises(ConfigError, match=r"templates\[0\]\.answers' has no answer for label\(s\) \['normal'\]"):
        build("image_folder_vqa", storage=str(clinical_root), templates=templates)
    with pytest.raises(ConfigError, match="must sum to 1"):
        build("image_folder_vqa", storage=str(clinical_root), split_fractions={"train": 0.9})
