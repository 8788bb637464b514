"""Where each data set's public release lives and how its files map onto the builder's layout.

Facts checked against the releases (see docs/datasets.md, "Getting the data"):

- QUILT-VQA (``wisdomik/Quilt_VQA``, gated: accept the terms on the dataset page first):
  ``quiltvqa_test_wo_ans.jsonl``, ``quiltvqa_test_w_ans.json`` and ``quilt_vqa.zip`` (the images,
  which Quilt-LLaVA's eval scripts read from ``images/``).
- QUILT-VQA red circle (``wisdomik/QuiltVQA_RED``, gated): ``quiltvqa_red_test_wo_ans.jsonl``,
  ``quiltvqa_red_test_w_ans.json``, ``red_circle.zip`` (read from ``red_circle/``) and the
  no-circle control questions ``quiltvqa_nored_test_wo_ans.jsonl``.
- PathVQA (``flaviagiammarino/path-vqa``): parquet shards ``data/{train,validation,test}-*.parquet``.
- PMC-VQA (``xmcmic/PMC-VQA``): ``train.csv``, ``test.csv`` and ``images.zip`` (about 20 GB);
  version 2 is ``train_2.csv``, ``test_2.csv`` and ``images_2.zip`` (about 2.3 GB); ``test_clean.csv``.

``revision`` is a commit to pin. None of these repositories publishes release tags. For PMC-VQA the
commit below is the one public code pins with ``load_dataset("xmcmic/PMC-VQA", revision=...)``;
it could not be checked against the Hub from here. For the others no commit id could be found, so
they start from the default branch: the first download records the commit it got in
``MANIFEST.json`` and every later run stays on that commit (``--revision`` / ``--update`` move it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Archive:
    """A zip in the repo whose images are extracted into ``into`` (the builder's image folder)."""

    file: str
    into: str
    # (annotation file, field) naming the images: used to find which folder level inside the
    # zip the image names start at, so that ``into/<name>`` is exactly what the builder opens.
    names_from: tuple[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class Form:
    """One release form of a data set: the files to fetch and the builder keys that read them."""

    files: tuple[str, ...]  # required: exact paths or globs (``data/train-*.parquet``)
    optional: tuple[str, ...] = ()  # fetched when the repo has them
    archives: tuple[Archive, ...] = ()
    builder_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class HubDataset:
    name: str
    repo_id: str
    forms: Mapping[str, Form]  # the first is the default
    revision: str | None = None
    gated: bool = False
    repo_type: str = "dataset"

    @property
    def default_form(self) -> str:
        return next(iter(self.forms))

    def page(self, endpoint: str) -> str:
        return f"{endpoint}/datasets/{self.repo_id}"


@dataclasses.dataclass(frozen=True)
class ManualDataset:
    """A data set without a public download: what to do by hand, and where the files go."""

    name: str
    steps: tuple[str, ...]
    layout: tuple[str, ...]


HUB: dict[str, HubDataset] = {
    "quilt_vqa": HubDataset(
        "quilt_vqa", "wisdomik/Quilt_VQA", gated=True,
        forms={
            "llava": Form(
                files=("quiltvqa_test_wo_ans.jsonl", "quiltvqa_test_w_ans.json", "quilt_vqa.zip"),
                archives=(Archive("quilt_vqa.zip", "images", ("quiltvqa_test_wo_ans.jsonl", "image")),),
            ),
            "parquet": Form(files=("data/*.parquet",), builder_options={"format": "parquet"}),
        },
    ),
    "quilt_vqa_red": HubDataset(
        "quilt_vqa_red", "wisdomik/QuiltVQA_RED", gated=True,
        forms={
            "llava": Form(
                files=("quiltvqa_red_test_wo_ans.jsonl", "quiltvqa_red_test_w_ans.json", "red_circle.zip"),
                optional=("quiltvqa_nored_test_wo_ans.jsonl",),
                archives=(Archive("red_circle.zip", "red_circle", ("quiltvqa_red_test_wo_ans.jsonl", "image")),),
            ),
            "parquet": Form(files=("data/*.parquet",), builder_options={"format": "parquet"}),
        },
    ),
    "pathvqa": HubDataset(
        "pathvqa", "flaviagiammarino/path-vqa",
        forms={
            "parquet": Form(
                files=("data/train-*.parquet", "data/validation-*.parquet", "data/test-*.parquet"),
                builder_options={"format": "parquet"},
            ),
        },
    ),
    "pmc_vqa": HubDataset(
        "pmc_vqa", "xmcmic/PMC-VQA", revision="a44ac85fe26f9abb976dab4268d86e7f77fe7ecc",
        forms={
            "v1": Form(
                files=("train.csv", "test.csv", "images.zip"),
                optional=("test_clean.csv",),
                archives=(Archive("images.zip", "images", ("test.csv", "Figure_path")),),
            ),
            "v2": Form(
                files=("train_2.csv", "test_2.csv", "images_2.zip"),
                archives=(Archive("images_2.zip", "images_2", ("test_2.csv", "Figure_path")),),
                builder_options={"files": {"train": "train_2.csv", "test": "test_2.csv"}, "image_dir": "images_2"},
            ),
        },
    ),
}

MANUAL: dict[str, ManualDataset] = {
    "quilt1m": ManualDataset(
        "quilt1m",
        steps=(
            "Quilt-1M is released under restricted access (terms protecting against redistribution).",
            "Images resized to 512x512 px (about 36 GB): request access on Zenodo, "
            "https://zenodo.org/record/8239942 , then download quilt_1M_lookup.csv and the image archive.",
            "Full-size images (about 110 GB, Google Drive): request time-limited access with the form "
            "linked from https://github.com/wisdomikezogwo/quilt1m (README, 'Data (QUILT-1M) Restricted Access').",
            "Unpack the images so that <root>/quilt_1m/<image_path> exists for the CSV's image_path values.",
            "The release is known to arrive incomplete: run `python -m lavis.datasets.check quilt1m --root <root>`, "
            "which counts the images of each subset and writes a lookup CSV of the rows you really have.",
        ),
        layout=("<root>/quilt_1M_lookup.csv", "<root>/quilt_1m/<image files>"),
    ),
    "quilt1m_wds": ManualDataset(
        "quilt1m_wds",
        steps=(
            "Get Quilt-1M first (`python -m lavis.datasets.download quilt1m` prints how).",
            "Write the shards: python -m lavis.datasets.tools.make_shards --csv <quilt1m>/quilt_1M_lookup.csv "
            "--images <quilt1m>/quilt_1m --out <root>/shards --split train --verify",
        ),
        layout=("<root>/shards/quilt1m-*.tar", "<root>/shards/shards.json"),
    ),
    "llava_med": ManualDataset(
        "llava_med",
        steps=(
            "LLaVA-Med's files are not hosted on the Hugging Face Hub, so there is nothing to fetch here.",
            "Instruction data: the conversation JSON files (e.g. llava_med_instruct_60k_inline_mention.json) from "
            "the download script of https://github.com/microsoft/LLaVA-Med ; their images come from PubMed Central "
            "through that repository's image download script, and some of its URLs are dead: check what arrived "
            "with `python -m lavis.datasets.check llava_med --root <root>`.",
            "PathVQA-style evaluation files in the LLaVA-Med conversation format: put them beside the others and "
            "name them under datasets.llava_med.files (e.g. files: {test: test_w_ans.json}).",
            "For PathVQA itself prefer `python -m lavis.datasets.download pathvqa`, which the pathvqa builder reads.",
        ),
        layout=("<root>/<conversation file>.json (datasets.llava_med.files)", "<root>/images/<image files>"),
    ),
    "clover_instructions": ManualDataset(
        "clover_instructions",
        steps=(
            "CLOVER's instructions are made from Quilt-1M captions: run generate_instructions.py "
            "(docs/instructions.md), which writes instructions.jsonl.",
        ),
        layout=("<root>/instructions.jsonl", "<root>/quilt_1m/<Quilt-1M image files>"),
    ),
    "image_folder_vqa": ManualDataset(
        "image_folder_vqa",
        steps=("Your own labelled images: nothing to download.",),
        layout=("<root>/<label>/<slide_id>/<image> (layout: label/slide)",),
    ),
}


def known_names() -> list[str]:
    return sorted({*HUB, *MANUAL})
