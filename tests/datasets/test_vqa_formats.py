"""LLaVA-Med conversations, PathVQA (parquet and both pickle layouts) and PMC-VQA CSV."""

import logging

import pyarrow as pa
import pytest

from lavis.common.errors import DataError


def _conversation(*turns):
    return [{"from": speaker, "value": value} for speaker, value in zip(["human", "gpt"] * len(turns), turns)]


@pytest.fixture()
def llava_root(tmp_path, write):
    root = tmp_path / "llava_med"
    write.json(
        root / "instruct.json",
        [
            {"id": "c1", "image": "p1.jpg", "conversations": _conversation(
                "<image>\nWhat stain is used?", "H&E.", "Is there HER2/neu staining?", "No.")},
            {"id": "c2", "image": "p2.jpg", "conversations": _conversation("Describe the lesion <image>", "A 2.5 mm nodule.")},
        ],
    )  # fmt: skip
    write.json(
        root / "test.json",
        [
            {"id": 11, "image": "p1.jpg", "answer_type": "CLOSED", "conversatons": _conversation("<image>\nIs it benign?", "yes")},
            {"id": 12, "image": "p2.jpg", "answer_type": "OPEN", "conversatons": _conversation("<image>\nWhat organ?", "skin")},
        ],
    )  # fmt: skip
    write.image_file(root / "images" / "p1.jpg")
    write.image_file(root / "images" / "p2.jpg")
    return root


def test_llava_med_one_pair_per_turn_without_image_token(llava_root, build):
    splits = build("llava_med", storage=str(llava_root), files={"train": "instruct.json", "test": "test.json"})
    train = splits["train"]
    assert train.column("text_input") == ["What stain is used?", "Is there HER2/neu staining?", "Describe the lesion"]
    assert train.column("text_output") == ["H&E.", "No.", "A 2.5 mm nodule."]
    assert train.column("question_id") == ["c1", "c1_1", "c2"]
    assert train.column("image_id") == [0, 0, 1]
    test = splits["test"]
    assert test.column("answer_type") == ["CLOSED", "OPEN"]
    assert test.column("yes_no_answer") == ["yes", None]
    assert test[0]["text_input"] == "Is it benign?" and test[0]["image"].shape == (3, 224, 224)


def test_llava_med_malformed_conversation_is_named(llava_root, build, write):
    write.json(llava_root / "bad.json", [{"id": 1, "image": "p1.jpg", "conversations": [
        {"from": "human", "value": "q"}, {"from": "human", "value": "again"}]}])  # fmt: skip
    with pytest.raises(DataError, match=r"bad\.json: record 1, field 'conversations\[1\]\.from': expected 'gpt'"):
        build("llava_med", storage=str(llava_root), files={"train": "bad.json"})
    write.json(llava_root / "bad.json", [{"id": 1, "image": "p1.jpg", "conversations": [{"from": "human", "value": "q"}]}])
    with pytest.raises(DataError, match=r"record 1, field 'conversations\[0\]': a human turn without the gpt answer"):
        build("llava_med", storage=str(llava_root), files={"train": "bad.json"})
    write.json(llava_root / "bad.json", [{"id": 1, "conversations": _conversation("q", "a")}])
    with pytest.raises(DataError, match=r"record 1, field 'image': missing"):
        build("llava_med", storage=str(llava_root), files={"train": "bad.json"})


def test_llava_med_path_escape_names_the_record(llava_root, build, write):
    records = [{"id": 1, "image": "p1.jpg", "conversations": _conversation("q", "a", "q2", "a2")},
               {"id": 2, "image": "../../etc/x.jpg", "conversations": _conversation("q", "a")}]  # fmt: skip
    write.json(llava_root / "esc.json", records)
    with pytest.raises(DataError, match=r"esc\.json: record 2, field 'image': image path '\.\./\.\./etc/x\.jpg' escapes"):
        build("llava_med", storage=str(llava_root), files={"train": "esc.json"})


def test_llava_med_duplicate_training_ids_only_warn(llava_root, build, write, caplog):
    record = {"id": "d", "image": "p1.jpg", "conversations": _conversation("q", "a")}
    write.json(llava_root / "dup.json", [record, record])
    with caplog.at_level(logging.WARNING):
        train = build("llava_med", storage=str(llava_root), files={"train": "dup.json"})["train"]
    assert len(train) == 2 and "1 duplicate question_id(s)" in caplog.text
    with pytest.raises(DataError, match="must be unique"):
        build("llava_med", storage=str(llava_root), files={"train": None, "test": "dup.json"})


def _image_struct(blobs):
    return pa.array(
        [{"bytes": b, "path": None} for b in blobs], type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    )


def test_pathvqa_parquet_splits_and_answer_types(tmp_path, write, build):
    root = tmp_path / "pathvqa"
    image = write.image_bytes("JPEG")
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        write.parquet(
            root / "data" / f"{name}-00000-of-00001.parquet",
            {
                "image": _image_struct([image, image, write.image_bytes("PNG")]),
                "question": [f"{split}: where are liver stem cells located?", "is this tissue inflamed?", "is it?"],
                "answer": ["in the canals of hering", "yes", "No"],
            },
        )
    splits = build("pathvqa", storage=str(root))
    assert set(splits) == {"train", "val", "test"}
    test = splits["test"]
    assert test.column("answer_type") == ["OPEN", "CLOSED", "CLOSED"]
    assert test.column("yes_no_answer") == [None, "yes", "no"]
    assert test.column("image_id") == [0, 0, 1]
    assert test[2]["image"].shape == (3, 224, 224)


def test_pathvqa_pickle_layouts(tmp_path, write, build):
    root = tmp_path / "pathvqa"
    write.pickle(root / "qas" / "train" / "train_qa.pkl", [
        {"image": "train_0422", "question": "Where are liver stem cells (oval cells) located?", "answer": "in the canals of hering"},
        {"image": "train_0423", "question": "is this a granuloma?", "answer": "yes"},
    ])  # fmt: skip
    write.pickle(root / "qas" / "test_vqa.pkl", [
        {"answer_type": "other", "img_id": "test_0001", "label": {"fibrosis": 1}, "question_id": 100001000,
         "question_type": "what", "sent": "What is present?"},
        {"answer_type": "yes/no", "img_id": "test_0001", "label": {"no": 1}, "question_id": 100001001,
         "question_type": "is", "sent": "Is there necrosis?"},
    ])  # fmt: skip
    for split, name in (("train", "train_0422"), ("train", "train_0423"), ("test", "test_0001")):
        write.image_file(root / "images" / split / f"{name}.jpg")
    files = {"train": "qas/train/train_qa.pkl", "val": None, "test": "qas/test_vqa.pkl"}
    splits = build("pathvqa", storage=str(root), format="pickle", files=files)
    train, test = splits["train"], splits["test"]
    assert train.column("answer_type") == ["OPEN", "CLOSED"] and train.column("question_id") == [0, 1]
    assert train[0]["image_path"] == "train_0422.jpg" and train[0]["image"].shape == (3, 224, 224)
    assert test.column("question_id") == [100001000, 100001001]
    assert test.column("answer") == ["fibrosis", "no"] and test.column("answer_type") == ["OPEN", "CLOSED"]
    assert test[1]["text_input"] == "Is there necrosis?" and test[1]["image"].shape == (3, 224, 224)


def test_pathvqa_pickle_bad_label_is_named(tmp_path, write, build):
    root = tmp_path / "pathvqa"
    write.pickle(root / "qas" / "x.pkl", [{"img_id": "a", "sent": "q?", "label": {}}])
    with pytest.raises(DataError, match=r"x\.pkl: record 1, field 'label': expected a non-empty \{answer: score\}"):
        build("pathvqa", storage=str(root), format="pickle", files={"train": "qas/x.pkl", "val": None, "test": None})


PMC_HEADER = ["Figure_path", "Question", "Answer", "Choice A", "Choice B", "Choice C", "Choice D", "Answer_label"]


def test_pmc_vqa_question_carries_the_choices(tmp_path, write, build):
    root = tmp_path / "pmc"
    write.csv(root / "train.csv", PMC_HEADER, [
        ["PMC1_F1.jpg", "Which artery is occluded?", "Left Anterior Descending", " A:Right Coronary ",
         " B:Left Anterior Descending ", " C:Circumflex ", " D:Posterior Descending ", "B"],
    ])  # fmt: skip
    write.csv(root / "test.csv", PMC_HEADER, [
        ["PMC2_F3.jpg", "What stain?", "H&E", "A:H&E", "B:PAS", "C:Ki-67 (30%)", "D:Trichrome", "A"],
        ["PMC2_F4.jpg", "What stain?", "PAS", "A:H&E", "B:PAS", "C:Ki-67", "D:Trichrome", "B"],
    ])  # fmt: skip
    write.image_file(root / "images" / "PMC1_F1.jpg")
    write.image_file(root / "images" / "PMC2_F3.jpg")
    splits = build("pmc_vqa", storage=str(root))
    item = splits["train"][0]
    assert item["text_input"] == (
        "Which artery is occluded? A: Right Coronary B: Left Anterior Descending C: Circumflex D: Posterior Descending"
    )
    assert item["answer"] == "B" and item["answer_type"] is None and item["image"].shape == (3, 224, 224)
    assert splits["test"].column("answer") == ["A", "B"]
    assert "C: Ki-67 (30%)" in splits["test"].column("text_input")[0]
    text = build("pmc_vqa", storage=str(root), answer_style="text")["test"]
    assert text.column("answer") == ["H&E", "PAS"]


def test_pmc_vqa_bad_label_and_header(tmp_path, write, build):
    root = tmp_path / "pmc"
    write.csv(root / "train.csv", PMC_HEADER, [["f.jpg", "q", "a", "A:1", "B:2", "C:3", "D:4", "E"]])
    with pytest.raises(DataError, match=r"train\.csv: row 1, field 'Answer_label': expected one of A-D, got 'E'"):
        build("pmc_vqa", storage=str(root), files={"test": None})
    write.csv(root / "train.csv", [c.replace("Choice ", "Option ") for c in PMC_HEADER], [["f.jpg"] * 8])
    with pytest.raises(DataError, match=r"missing column\(s\) \['Choice A', 'Choice B', 'Choice C', 'Choice D'\]"):
        build("pmc_vqa", storage=str(root), files={"test": None})
