"""Checkpoint provenance: stored in the safetensors header by the atomic save, read without
loading tensors, and compared with a config's record (which differences are errors)."""

from __future__ import annotations

import torch

from lavis.common.checkpoint import save_checkpoint
from lavis.common.provenance import (
    compare_provenance,
    provenance_metadata,
    read_provenance,
    safetensors_header,
)


def record(llm: str = "lmsys/vicuna-7b-v1.1", **llm_fields) -> dict:
    return {"format": 1, "llm": {"name_or_path": llm, "revision": None, "config_sha256": None,
                                 "tokenizer_sha256": None, **llm_fields},
            "vision": {"name": "eva_clip_g", "precision": "fp16", "file_sha256": "a" * 64, "encoder_digest": "d1"},
            "qformer": {"tokenizer_sha256": "q1"}}


def test_the_record_travels_in_the_weights_file_and_is_read_from_its_header(tmp_path):
    saved = record(config_sha256="c1")
    folder = save_checkpoint(tmp_path / "step_3", {"w": torch.ones(2)}, {"step": 3}, provenance_metadata(saved))
    assert read_provenance(folder) == saved
    assert read_provenance(folder / "model.safetensors") == saved
    header = safetensors_header(folder / "model.safetensors")
    assert set(header) == {"w", "__metadata__"}
    plain = save_checkpoint(tmp_path / "step_4", {"w": torch.ones(2)}, {"step": 4})
    assert read_provenance(plain) is None  # older checkpoints: no record
    (tmp_path / "x.pth").write_bytes(b"not ours")
    assert read_provenance(tmp_path / "x.pth") is None
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes((folder / "model.safetensors").read_bytes()[:20])
    assert read_provenance(broken) is None


def test_vicuna_v1_1_against_v1_5_is_an_error_and_local_renames_are_warnings():
    errors = compare_provenance(record("lmsys/vicuna-7b-v1.1"), record("lmsys/vicuna-7b-v1.5"))
    assert [d.field for d in errors] == ["llm.name_or_path"] and errors[0].error
    assert "'lmsys/vicuna-7b-v1.1'" in str(errors[0]) and "'lmsys/vicuna-7b-v1.5'" in str(errors[0])
    renamed = compare_provenance(record("/old/vicuna", config_sha256="c", tokenizer_sha256="t"),
                                 record("/new/vicuna", config_sha256="c", tokenizer_sha256="t"))
    assert [(d.field, d.error) for d in renamed] == [("llm.name_or_path", False)]
    other = compare_provenance(record("/old/vicuna", config_sha256="c"), record("/new/vicuna", config_sha256="e"))
    assert ("llm.config_sha256", True) in [(d.field, d.error) for d in other]


def test_encoder_weights_and_vocabularies_are_compared():
    current = record()
    current["vision"] = {**current["vision"], "file_sha256": "b" * 64}
    current["qformer"] = {"tokenizer_sha256": "q2"}
    fields = {d.field for d in compare_provenance(record(), current) if d.error}
    assert fields == {"vision.file_sha256", "qformer.tokenizer_sha256"}
    # without file digests, the loaded encoders' digests decide, at the same precision only
    old, new = record(), record()
    for r, digest, precision in ((old, "d1", "fp16"), (new, "d2", "fp32")):
        r["vision"] = {**r["vision"], "file_sha256": None, "encoder_digest": digest, "precision": precision}
    assert compare_provenance(old, new) == []
    new["vision"]["precision"] = "fp16"
    assert [d.field for d in compare_provenance(old, new)] == ["vision.encoder_digest"]
    assert compare_provenance({"format": 1}, record()) == []  # nothing recorded, nothing to compare
