import logging

import pytest
import torch

from lavis.common.errors import ConfigError, DataError
from lavis.datasets.bad_data import SkippedSample

HEADER = [
    "", "caption", "image_path", "subset", "split", "pathology", "roi_text", "noisy_text",
    "corrected_text", "med_umls_ids", "magnification", "height", "width", "single_wsi", "not_histology",
]  # fmt: skip


def _row(index, caption, image, subset="quilt", split="train", pathology="['Dermatopathology']", corrected=None):
    return [
        index, caption, image, subset, split, pathology, "['roi']", "noisy " + caption,
        corrected if corrected is not None else caption.upper(), "['C0001']", "2.0", "32", "40", "1", "0",
    ]  # fmt: skip


@pytest.fixture()
def quilt_root(tmp_path, write):
    root = tmp_path / "quilt"
    rows = [
        _row(0, "Gleason 3+4 acinar adenocarcinoma", "img_a.jpg", pathology="['Genitourinary']"),
        _row(1, "small glands, Gleason 3+4", "img_a.jpg", pathology="['Genitourinary']"),
        _row(2, "Ki-67 (30%) in tumor nuclei", "img_b.jpg", subset="openpath", pathology="['Breast', 'Dermatopathology']"),
        _row(3, "HER2/neu membranous staining", "img_c.png", subset="pubmed", pathology="['breast']"),
        _row(4, "a 2.5 mm focus of melanoma", "img_d.jpg", split="val"),
        _row(5, "a second view", "img_d.jpg", split="val"),
    ]
    write.csv(root / "quilt_1M_lookup.csv", HEADER, rows)
    for name in ("img_a.jpg", "img_b.jpg", "img_c.png", "img_d.jpg"):
        write.image_file(root / "quilt_1m" / name, size=(48, 40))
    return root


def test_builds_splits_with_captions_and_shared_image_ids(quilt_root, build):
    splits = build("quilt1m", storage=str(quilt_root))
    assert set(splits) == {"train", "val"}
    train = splits["train"]
    assert len(train) == 4 and len(splits["val"]) == 2
    assert train.column("text_input")[0] == "Gleason 3+4 acinar adenocarcinoma"
    ids = train.column("image_id")
    assert ids == [0, 0, 1, 2]  # both captions of img_a share one id; ids are dense
    item = train[2]
    assert item["image"].shape == (3, 224, 224) and item["image"].dtype == torch.float32
    assert item["image_id"] == 1 and item["image_path"] == "img_b.jpg"
    assert item["text_input"] == "Ki-67 (30%) in tumor nuclei"  # pathology tokens intact


def test_caption_field_subset_and_pathology_filters(quilt_root, build):
    splits = build(
        "quilt1m",
        storage=str(quilt_root),
        caption_field="corrected_text",
        subsets=["openpath", "pubmed"],
        pathology=["BREAST"],
        splits={"val": None},  # null drops a split of the defaults
    )
    train = splits["train"]
    assert train.column("text_input") == ["KI-67 (30%) IN TUMOR NUCLEI", "HER2/NEU MEMBRANOUS STAINING"]
    assert train.column("image_path") == ["img_b.jpg", "img_c.png"]


def test_empty_captions_are_dropped_or_an_error(quilt_root, build, write, caplog):
    csv = quilt_root / "quilt_1M_lookup.csv"
    with open(csv, "a", newline="") as f:
        f.write('6,"   ",img_a.jpg,quilt,train,[],,,,,,,,,\n')
    with caplog.at_level(logging.WARNING):
        splits = build("quilt1m", storage=str(quilt_root))
    assert len(splits["train"]) == 4 and "dropped 1 row(s) with an empty 'caption'" in caplog.text
    with pytest.raises(DataError, match=r"quilt_1M_lookup\.csv: row 7, field 'caption': empty value"):
        build("quilt1m", storage=str(quilt_root), drop_empty_captions=False, subsets=["quilt", "pubmed"])


def test_unknown_split_value_and_missing_storage(quilt_root, build):
    with pytest.raises(DataError, match=r"no rows with split == 'test'.*found \['train', 'val'\]"):
        build("quilt1m", storage=str(quilt_root), splits={"test": "test"})
    with pytest.raises(ConfigError, match=r"'splits' must name at least one split"):
        build("quilt1m", storage=str(quilt_root), splits={"train": None, "val": None})
    with pytest.raises(ConfigError, match=r"datasets\.quilt1m\.storage"):
        build("quilt1m")
    with pytest.raises(ConfigError, match=r"caption_field"):
        build("quilt1m", storage=str(quilt_root), caption_field="roi_text")


def test_image_path_escaping_the_root_fails_at_build(quilt_root, build, write):
    rows = [_row(0, "x", "img_a.jpg", subset="pubmed"), _row(1, "y", "img_a.jpg"), _row(2, "z", "../outside.jpg")]
    write.csv(quilt_root / "quilt_1M_lookup.csv", HEADER, rows)
    # the message names the CSV's row, not the row in the filtered table
    with pytest.raises(DataError, match=r"lookup\.csv: row 3, field 'image_path': image path '\.\./outside\.jpg' escapes"):
        build("quilt1m", storage=str(quilt_root), splits={"val": None}, subsets=["quilt"])


def test_missing_image_is_a_skip_or_strict_error(quilt_root, build):
    (quilt_root / "quilt_1m" / "img_c.png").unlink()
    train = build("quilt1m", storage=str(quilt_root))["train"]
    skipped = train[3]
    assert isinstance(skipped, SkippedSample)
    assert skipped.path.endswith("quilt_1m/img_c.png") and skipped.reason == "file not found"
    strict = build("quilt1m", storage=str(quilt_root), strict=True)["train"]
    with pytest.raises(DataError, match=r"img_c\.png: file not found"):
        strict[3]


def test_image_ids_are_shared_across_table_chunks():
    import pyarrow as pa

    from lavis.datasets.builders.table_builder import with_image_ids

    chunked = pa.Table.from_batches(
        [pa.record_batch({"image_path": ["a", "b"]}), pa.record_batch({"image_path": ["b", "c", "a"]})]
    )
    assert with_image_ids(chunked).column("image_id").to_pylist() == [0, 1, 1, 2, 0]
