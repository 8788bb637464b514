"""evaluate.py runs the shipped eval configs end to end at tiny size on files in the real layouts."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = [
    ("q1", "Is there necrosis in this image?", "No, there is no necrosis.", "CLOSED", "no"),
    ("q2", "What type of cells are seen?", "Lymphocytes infiltrate the stroma.", "OPEN", None),
    ("q3", "Is the epidermis thickened?", "Yes, the epidermis is thickened.", "CLOSED", "yes"),
]
CORPUS = [q for _, q, a, _, _ in QUESTIONS for q in (q, a)] + ["yes", "no", "the tissue shows glands"]


def png_bytes(seed: int) -> bytes:
    from skimage import data

    crop = data.immunohistochemistry()[seed * 40 : seed * 40 + 96, :96]
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="PNG")
    return buffer.getvalue()


def write_quilt(root: Path, red: bool) -> None:
    folder = root / ("red_circle" if red else "images")
    folder.mkdir(parents=True)
    prefix = "quiltvqa_red_test" if red else "quiltvqa_test"
    with open(root / f"{prefix}_wo_ans.jsonl", "w") as handle:
        for i, (qid, q, _, _, _) in enumerate(QUESTIONS):
            (folder / f"{qid}.png").write_bytes(png_bytes(i))
            handle.write(json.dumps({"question_id": qid, "image": f"{qid}.png", "text": q}) + "\n")
    answers = [{"id": qid, "answer": a, "answer_type": t, **({"yes_no_answer": yn} if yn else {})}
               for qid, _, a, t, yn in QUESTIONS]
    (root / f"{prefix}_w_ans.json").write_text(json.dumps(answers))


def write_llava_med(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    items = []
    for i, (qid, q, a, t, _) in enumerate(QUESTIONS):
        (root / "images" / f"{qid}.png").write_bytes(png_bytes(i))
        items.append({"id": qid, "image": f"{qid}.png", "answer_type": t,
                      "conversatons": [{"from": "human", "value": f"{q}\n<image>"}, {"from": "gpt", "value": a}]})
    (root / "test.json").write_text(json.dumps(items))


def write_pathvqa(root: Path) -> None:
    (root / "data").mkdir(parents=True)
    table = pa.table({
        "image": [{"bytes": png_bytes(i), "path": f"{qid}.png"} for i, (qid, *_rest) in enumerate(QUESTIONS)],
        "question": [q for _, q, _, _, _ in QUESTIONS],
        "answer": ["no", "lymphocytes", "yes"],
    })
    pq.write_table(table, root / "data" / "test-00000-of-00001.parquet")


WRITERS = {
    "quiltvqa_flant5xl": ("quilt_vqa", lambda r: write_quilt(r, red=False)),
    "quiltvqa_red_vicuna7b": ("quilt_vqa_red", lambda r: write_quilt(r, red=True)),
    "llava_med_flant5xl": ("llava_med", write_llava_med),
    "pathvqa_vicuna7b": ("pathvqa", write_pathvqa),
}


@pytest.fixture(scope="module")
def tiny_lms(tmp_path_factory):
    from lavis.models.llm.tiny import save_tiny_llama, save_tiny_t5

    root = tmp_path_factory.mktemp("lms")
    return {"t5": save_tiny_t5(root / "t5", CORPUS * 5, vocab_size=96),
            "llama": save_tiny_llama(root / "llama", CORPUS * 5, vocab_size=96)}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_eval_config_runs_at_tiny_size(name, tmp_path, tiny_lms, minilm_dir):
    builder, write = WRITERS[name]
    data = tmp_path / "data"
    write(data)
    llm = tiny_lms["t5" if "flant5" in name else "llama"]
    options = [
        "model.model_type=tiny", "model.checkpoint=null", f"model.qformer.tokenizer={minilm_dir}",
        f"model.llm.name_or_path={llm}", f"datasets.{builder}.storage={data}",
        f"datasets.{builder}.vis_processor.eval.image_size=56", f"run.output_dir={tmp_path / 'out'}",
        "run.precision=fp32", "run.num_workers=0", "run.progress_bar=false", "run.device=cpu",
    ]
    proc = subprocess.run(
        [sys.executable, "evaluate.py", "--cfg-path", f"configs/eval/{name}.yaml", "--options", *options],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    stem = tmp_path / "out" / f"{builder}_test_eval"
    answers = [json.loads(x) for x in Path(f"{stem}_answers.jsonl").read_text().splitlines()]
    # PathVQA's parquet has no question ids: the row number stands in
    expected = [0, 1, 2] if builder == "pathvqa" else ["q1", "q2", "q3"]
    assert sorted(a["question_id"] for a in answers) == expected
    metrics = json.loads(Path(f"{stem}_metrics.json").read_text())
    assert metrics["generation"] == {"num_beams": 5, "max_new_tokens": 40, "min_new_tokens": 5, "length_penalty": None,
                                     "repetition_penalty": 1.0, "use_nucleus_sampling": False, "top_p": 0.9,
                                     "temperature": 1.0, "num_return_sequences": 1}
    first = next(iter(metrics["protocols"].values()))
    assert first["num_open"] == 1 and first["num_closed"] == 2


def test_caption_eval_config_scores_with_coco_metrics(tmp_path, tiny_lms, minilm_dir):
    data = tmp_path / "quilt"
    (data / "quilt_1m").mkdir(parents=True)
    rows = ["caption,image_path,subset,split,pathology,roi_text,noisy_text,corrected_text,med_umls_ids,magnification,height,width"]
    captions = ["the tissue shows glands", "lymphocytes infiltrate the stroma", "the tissue shows glands"]
    for i, caption in enumerate(captions):
        name = f"img{min(i, 1)}.png"  # images 0 and 1; image 1 has two captions
        (data / "quilt_1m" / name).write_bytes(png_bytes(min(i, 1)))
        rows.append(f"{caption},{name},quilt,val,[],[],{caption},{caption},[],1,96,96")
    (data / "quilt_1M_lookup.csv").write_text("\n".join(rows) + "\n")
    options = [
        "model.model_type=tiny", "model.checkpoint=null", f"model.qformer.tokenizer={minilm_dir}",
        f"model.llm.name_or_path={tiny_lms['t5']}", f"datasets.quilt1m.storage={data}",
        "datasets.quilt1m.vis_processor.eval.image_size=56", f"run.output_dir={tmp_path / 'out'}",
        "run.precision=fp32", "run.num_workers=0", "run.progress_bar=false", "run.device=cpu",
    ]
    proc = subprocess.run(
        [sys.executable, "evaluate.py", "--cfg-path", "configs/eval/quilt_captions_flant5xl.yaml", "--options", *options],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    scores = json.loads((tmp_path / "out" / "quilt1m_val_eval_metrics.json").read_text())
    assert {"Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "agg_metrics"} <= set(scores)
    captions_out = (tmp_path / "out" / "quilt1m_val_eval_captions.jsonl").read_text().splitlines()
    assert len(captions_out) == 2  # one caption generated per image, scored against all of its captions
