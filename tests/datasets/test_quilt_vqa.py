import pyarrow as pa
import pytest
import torch

from lavis.common.errors import DataError

QUESTIONS = [
    {"question_id": 1, "image": "a.jpg", "text": "What is seen in\nthis image?"},
    {"question_id": 2, "image": "a.jpg", "text": "Is this a benign lesion?"},
    {"question_id": 3, "image": "b.jpg", "text": "Which grade, e.g. Gleason 3+4?"},
]
ANSWERS = [
    {"id": 1, "answer": "Nests of atypical melanocytes in the dermis.", "answer_type": "OPEN", "yes_no_answer": None},
    {"id": 2, "answer": "No, this looks malignant.", "answer_type": "CLOSED", "yes_no_answer": "no"},
    {"id": 3, "answer": "Gleason 3+4 = 7.", "answer_type": "OPEN"},
]


@pytest.fixture()
def quilt_vqa_root(tmp_path, write):
    root = tmp_path / "quilt_vqa"
    write.jsonl(root / "quiltvqa_test_wo_ans.jsonl", QUESTIONS)
    write.json(root / "quiltvqa_test_w_ans.json", ANSWERS)
    write.image_file(root / "images" / "a.jpg")
    write.image_file(root / "images" / "b.jpg")
    return root


def test_llava_form_joins_questions_and_answers(quilt_vqa_root, build):
    splits = build("quilt_vqa", storage=str(quilt_vqa_root))
    test = splits["test"]
    assert len(test) == 3
    item = test[1]
    assert item["question_id"] == 2 and item["answer_type"] == "CLOSED" and item["yes_no_answer"] == "no"
    assert item["answer"] == "No, this looks malignant." and item["text_output"] == item["answer"]
    assert item["image"].shape == (3, 224, 224)
    assert test[0]["text_input"] == "What is seen in this image?"  # whitespace cleaned by the processor
    assert test[0]["yes_no_answer"] is None and test[0]["answer_type"] == "OPEN"
    assert test.column("image_id") == [0, 0, 1]


def test_question_without_answer_names_the_id(quilt_vqa_root, build, write):
    write.json(quilt_vqa_root / "quiltvqa_test_w_ans.json", ANSWERS[:2])
    with pytest.raises(DataError, match=r"wo_ans\.jsonl: line 3, field 'question_id': 3 has no record with that 'id'"):
        build("quilt_vqa", storage=str(quilt_vqa_root))


def test_image_path_escaping_the_root_names_the_line(quilt_vqa_root, build, write):
    write.jsonl(quilt_vqa_root / "quiltvqa_test_wo_ans.jsonl", [QUESTIONS[0], {**QUESTIONS[1], "image": "/etc/passwd"}])
    with pytest.raises(DataError, match=r"wo_ans\.jsonl: line 2, field 'image': image path '/etc/passwd' escapes"):
        build("quilt_vqa", storage=str(quilt_vqa_root))


def test_duplicate_question_ids_are_an_error(quilt_vqa_root, build, write):
    write.jsonl(quilt_vqa_root / "quiltvqa_test_wo_ans.jsonl", QUESTIONS + [QUESTIONS[0]])
    with pytest.raises(DataError, match=r"1 duplicate question_id.*first: \[1\].*must be unique"):
        build("quilt_vqa", storage=str(quilt_vqa_root))
    write.json(quilt_vqa_root / "quiltvqa_test_w_ans.json", ANSWERS + [ANSWERS[2]])
    with pytest.raises(DataError, match=r"w_ans\.json: record 4, field 'id': duplicate id 3 \(first in record 3\)"):
        build("quilt_vqa", storage=str(quilt_vqa_root))


def test_bad_answer_type_and_yes_no_are_named(quilt_vqa_root, build, write):
    write.json(quilt_vqa_root / "quiltvqa_test_w_ans.json", [*ANSWERS[:2], {**ANSWERS[2], "answer_type": "MAYBE"}])
    with pytest.raises(DataError, match=r"w_ans\.json: record 3, field 'answer_type': expected OPEN or CLOSED"):
        build("quilt_vqa", storage=str(quilt_vqa_root))
    write.json(quilt_vqa_root / "quiltvqa_test_w_ans.json", [ANSWERS[0], {**ANSWERS[1], "yes_no_answer": "maybe"}, ANSWERS[2]])
    with pytest.raises(DataError, match=r"record 2, field 'yes_no_answer': expected yes or no"):
        build("quilt_vqa", storage=str(quilt_vqa_root))


def test_red_circle_variant_reads_its_own_files_and_folder(tmp_path, write, build):
    root = tmp_path / "quilt_vqa"
    write.jsonl(root / "quiltvqa_red_test_wo_ans.jsonl", QUESTIONS[:2])
    write.json(root / "quiltvqa_red_test_w_ans.json", ANSWERS[:2])
    write.image_file(root / "red_circle" / "a.jpg", size=(30, 30))
    test = build("quilt_vqa_red", storage=str(root))["test"]
    assert len(test) == 2
    assert test[0]["image"].shape == (3, 224, 224)
    (root / "red_circle" / "a.jpg").unlink()
    assert test[0].reason == "file not found" and "red_circle/a.jpg" in test[0].path


def _image_column(blobs, paths):
    return pa.array(
        [{"bytes": b, "path": p} for b, p in zip(blobs, paths)],
        type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
    )


def test_parquet_form_reads_image_bytes(tmp_path, write, build):
    one, two = write.image_bytes("JPEG"), write.image_bytes("PNG")
    write.parquet(
        tmp_path / "qv" / "data" / "train-00000-of-00001.parquet",
        {
            "image": _image_column([one, one, two], [None, None, "x.png"]),
            "question": ["Describe it.", "Is there necrosis?", "Where?"],
            "answer": ["Sheets of cells.", "Yes, there is.", "In the dermis."],
            "answer_type": ["OPEN", "CLOSED", "OPEN"],
            "context": ["c1", "c2", "c3"],
        },
    )
    test = build("quilt_vqa", storage=str(tmp_path / "qv"), format="parquet")["test"]
    assert test.column("question_id") == [0, 1, 2]
    assert test.column("image_id") == [0, 0, 1]  # identical bytes -> one image
    assert test.column("yes_no_answer") == [None, "yes", None]
    item = test[2]
    assert isinstance(item["image"], torch.Tensor) and item["image_path"].startswith("x.png#")
