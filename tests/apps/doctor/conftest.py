"""What the demo configs read, made small and fast in a temp folder: tiles of a real IHC image in
the demo's data layout (Quilt-1M lookup CSV, instructions JSONL, QUILT-VQA files), the frozen
image encoder's weights file, a tiny FlanT5-style LLM folder, and a stage-2 checkpoint written by
a real ``train.py`` run (so it carries the provenance a run records)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CAPTIONS = ["H&E stained skin at low magnification.", "IHC stained colonic mucosa, negative DAB staining.",
            "Dense tumour cells with pleomorphic nuclei.", "Loose stroma with scattered lymphocytes."]


@dataclasses.dataclass
class DemoSetup:
    data: Path
    vision: Path
    t5: Path
    out: Path
    stage2_checkpoint: Path | None = None

    def options(self, stage: str, **extra: str) -> list[str]:
        """Point a demo stage config at these folders (as run_demo.py does)."""
        options = [f"model.vision.pretrained={self.vision}", f"run.output_dir={self.out / stage}"]
        if stage != "stage1":
            options.append(f"model.llm.name_or_path={self.t5}")
        dataset = {"stage1": "quilt1m", "stage2": "clover_instructions"}.get(stage, "quilt_vqa")
        options.append(f"datasets.{dataset}.storage={self.data}")
        return options + [f"{k}={v}" for k, v in extra.items()]


def write_demo_data(root: Path, tissue) -> None:
    from PIL import Image

    rows, instructions, questions, answers = [], [], [], []
    for index in range(8):
        split = "train" if index < 6 else "test"
        name = f"{split}/tile_{index}.png"
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        y, x = 40 * index, 30 * index
        Image.fromarray(tissue[y:y + 64, x:x + 64]).save(root / "images" / name)
        caption = CAPTIONS[index % len(CAPTIONS)]
        rows.append({"caption": caption, "image_path": name, "subset": "demo", "split": split})
        if split == "train":
            for question, answer in (("Describe this image in detail.", caption),
                                     ("Is the DAB staining positive?", "no")):
                instructions.append({"question": question, "answer": answer, "image": name, "caption": caption,
                                     "caption_id": name, "source": "template"})
        else:
            qid = len(questions)
            questions.append({"question_id": qid, "image": name, "text": "Is this section stained with IHC?"})
            answers.append({"id": qid, "answer": "yes", "answer_type": "CLOSED", "yes_no_answer": "yes"})
    with open(root / "quilt_1M_lookup.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "instructions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in instructions))
    (root / "instructions_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in instructions))  # stage 2 validates
    (root / "quiltvqa_test_wo_ans.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (root / "quiltvqa_test_w_ans.json").write_text(json.dumps(answers))


def write_vision_weights(path: Path) -> Path:
    """The demo encoder (configs/models/blip2/demo.yaml), randomly initialised, as a safetensors file."""
    import torch
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    from lavis.models.vision.base import VISION_ENCODERS

    section = OmegaConf.to_container(OmegaConf.load(REPO / "configs/models/blip2/demo.yaml").model.vision)
    section["pretrained"] = None
    torch.manual_seed(0)
    encoder = VISION_ENCODERS.get(section["name"]).from_config(section)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(path))
    return path


def tiny_t5(folder: Path, vocab_size: int = 96, seed: int = 0, extra_text: tuple[str, ...] = (),
            d_model: int = 64) -> Path:
    from lavis.models.llm.tiny import save_tiny_t5

    texts = [*CAPTIONS, "describe this image in detail", "is the dab staining positive", "yes", "no", *extra_text] * 8
    return save_tiny_t5(folder, texts, vocab_size=vocab_size, seed=seed, d_model=d_model)


@pytest.fixture(scope="session")
def demo(tmp_path_factory, tissue_image) -> DemoSetup:
    root = tmp_path_factory.mktemp("demo")
    write_demo_data(root / "data", tissue_image)
    setup = DemoSetup(root / "data", write_vision_weights(root / "pretrained" / "vision.safetensors"),
                      tiny_t5(root / "pretrained" / "t5"), root / "runs")
    # a stage-2 run through the real entry point: its checkpoint records what it was trained with
    options = setup.options("stage2", **{"run.max_epoch": "1", "run.batch_size_train": "8", "run.num_workers": "0",
                                         "run.progress_bar": "false", "run.device": "cpu"})
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "train.py", "--cfg-path", "configs/demo/stage2.yaml", "--options", *options],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    setup.stage2_checkpoint = setup.out / "stage2" / "checkpoints" / "last"
    return setup


@pytest.fixture(scope="session")
def tissue_image():
    from skimage import data

    return data.immunohistochemistry()
