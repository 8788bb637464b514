"""``lavis.datasets.download`` against a fake Hub on loopback: the real huggingface_hub client
code lists, fetches (with Range resume), verifies and lays out small files in the real layouts."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lavis.common.errors import DownloadError
from lavis.datasets.download import Request, download_dataset
from lavis.datasets.download.__main__ import main as download_main
from lavis.datasets.download.hub import partial_path
from tests.datasets.fake_hub import FakeHub

REPO = Path(__file__).resolve().parents[2]
TOKEN = "hf_fake_test_token"


def parquet_bytes(write, rows: int, start: int) -> bytes:
    images = [{"bytes": write.image_bytes("PNG", index=start + i), "path": f"img_{start + i}.png"} for i in range(rows)]
    answers = ["yes" if i % 2 else "an epithelioid granuloma" for i in range(rows)]
    table = pa.table({"image": images, "question": [f"question {start + i}?" for i in range(rows)], "answer": answers})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def pathvqa_files(write) -> dict[str, bytes]:
    return {
        "README.md": b"# PathVQA\n",
        "data/train-00000-of-00002.parquet": parquet_bytes(write, 4, 0),
        "data/train-00001-of-00002.parquet": parquet_bytes(write, 3, 4),
        "data/validation-00000-of-00001.parquet": parquet_bytes(write, 2, 7),
        "data/test-00000-of-00001.parquet": parquet_bytes(write, 3, 9),
    }


def noise_jpeg(index: int, size: tuple[int, int]) -> bytes:
    """A JPEG that barely compresses (random pixels): a big file from a few images."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(index).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def quilt_vqa_files(write, images: int = 4, big: bool = False) -> dict[str, bytes]:
    """The LLaVA form: question JSONL, answer JSON and a zip nesting the images one folder deep."""
    names = [f"{i:04d}.jpg" for i in range(images)]
    questions = [{"question_id": i, "image": name, "text": f"What is shown in image {i}?"} for i, name in enumerate(names)]
    answers = [{"id": i, "answer": "Yes, it is." if i % 2 else "Sheets of tumour cells.",
                "answer_type": "CLOSED" if i % 2 else "OPEN", "yes_no_answer": "yes" if i % 2 else None}
               for i in range(images)]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for index, name in enumerate(names):
            data = noise_jpeg(index, (2000, 1000)) if big else write.image_bytes(index=index)
            zf.writestr(f"quilt_vqa/{name}", data)
        zf.writestr("__MACOSX/quilt_vqa/._0000.jpg", b"junk")
    return {
        "quiltvqa_test_wo_ans.jsonl": "".join(json.dumps(q) + "\n" for q in questions).encode(),
        "quiltvqa_test_w_ans.json": json.dumps(answers).encode(),
        "quilt_vqa.zip": archive.getvalue(),
    }


@pytest.fixture()
def hub(monkeypatch):
    from huggingface_hub import constants

    server = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite imports it offline
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    yield server
    server.stop()


def test_fresh_download_lays_out_pathvqa_for_its_builder_and_a_rerun_fetches_nothing(hub, write, tmp_path, build):
    files = pathvqa_files(write)
    commit = hub.add("flaviagiammarino/path-vqa", files)
    root = tmp_path / "pathvqa"
    manifest = download_dataset(Request("pathvqa", root), log=lambda _: None)

    assert manifest.revision == commit and manifest.requested_revision == "main"
    recorded = {f["path"]: f for f in manifest.files}
    assert set(recorded) == {p for p in files if p.endswith(".parquet")}  # README not fetched
    import hashlib

    for path, record in recorded.items():
        assert (root / path).read_bytes() == files[path]
        assert record["sha256"] == hashlib.sha256(files[path]).hexdigest() and record["size"] == len(files[path])
    on_disk = json.loads((root / "MANIFEST.json").read_text())
    assert on_disk["revision"] == commit and on_disk["date"].endswith("Z")
    assert on_disk["layout"] == {"train": {"rows": 7, "images": "in the table"},
                                 "val": {"rows": 2, "images": "in the table"},
                                 "test": {"rows": 3, "images": "in the table"}}
    splits = build("pathvqa", storage=str(root))
    assert {s: len(d) for s, d in splits.items()} == {"train": 7, "val": 2, "test": 3}

    transfers = len([e for e in hub.log if e.method == "GET" and e.sent and "/cdn/" in e.path])
    download_dataset(Request("pathvqa", root), log=lambda _: None)
    assert len([e for e in hub.log if e.method == "GET" and e.sent and "/cdn/" in e.path]) == transfers
    # the rerun asked for the pinned commit, not the branch
    assert any(e.path.endswith(f"/revision/{commit}") for e in hub.log)


def test_a_corrupted_file_is_fetched_again_and_only_it(hub, write, tmp_path):
    files = pathvqa_files(write)
    hub.add("flaviagiammarino/path-vqa", files)
    root = tmp_path / "pathvqa"
    download_dataset(Request("pathvqa", root), log=lambda _: None)
    target = root / "data/validation-00000-of-00001.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    target.write_bytes(bytes(data))
    before = len(hub.log)

    lines: list[str] = []
    download_dataset(Request("pathvqa", root), log=lines.append)
    fetched = [e for e in hub.log[before:] if e.method == "GET" and e.sent and "/cdn/" in e.path]
    assert len(fetched) == 1 and target.read_bytes() == files["data/validation-00000-of-00001.parquet"]
    assert any(line.startswith("re-fetch") and "validation" in line for line in lines)


def test_gated_set_without_a_token_fails_with_the_steps_and_with_it_unpacks_the_images(hub, write, tmp_path, build):
    files = quilt_vqa_files(write)
    hub.add("wisdomik/Quilt_VQA", files, token=TOKEN)
    root = tmp_path / "quilt_vqa"
    with pytest.raises(DownloadError) as caught:
        download_dataset(Request("quilt_vqa", root), log=lambda _: None)
    message = str(caught.value)
    assert "gated" in message and "accept its terms" in message and "HF_TOKEN" in message
    assert f"{hub.endpoint}/datasets/wisdomik/Quilt_VQA" in message

    manifest = download_dataset(Request("quilt_vqa", root, token=TOKEN), log=lambda _: None)
    assert sorted(p.name for p in (root / "images").iterdir()) == ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"]
    assert manifest.archives[0]["strip"] == "quilt_vqa/" and manifest.archives[0]["files"] == 4
    assert manifest.layout["test"] == {"rows": 4, "image_folder": "images", "images": 4, "images_missing": 0}
    test = build("quilt_vqa", storage=str(root))["test"]
    assert test[0]["image"].shape[0] == 3 and test.column("answer_type") == ["OPEN", "CLOSED"] * 2

    # an image deleted after unpacking is put back from the verified archive, without a download
    (root / "images" / "0002.jpg").unlink()
    before = len(hub.log)
    download_dataset(Request("quilt_vqa", root, token=TOKEN), log=lambda _: None)
    assert (root / "images" / "0002.jpg").is_file()
    assert not [e for e in hub.log[before:] if e.method == "GET" and e.sent and e.path.endswith(".zip")]


def test_offline_rerun_verifies_against_the_manifest_and_names_what_is_missing(hub, write, tmp_path, monkeypatch):
    from huggingface_hub import constants

    hub.add("flaviagiammarino/path-vqa", pathvqa_files(write))
    root = tmp_path / "pathvqa"
    download_dataset(Request("pathvqa", root), log=lambda _: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(hub.log)
    assert len(download_dataset(Request("pathvqa", root), log=lambda _: None).files) == 4
    (root / "data/test-00000-of-00001.parquet").unlink()
    with pytest.raises(DownloadError, match="test-00000-of-00001.parquet"):
        download_dataset(Request("pathvqa", root), log=lambda _: None)
    assert len(hub.log) == before  # offline means no request at all


def test_manual_sets_print_where_to_get_them(capsys):
    assert download_main(["quilt1m", "--root", "/nowhere"]) == 1
    out = capsys.readouterr().out
    assert "zenodo.org/record/8239942" in out and "quilt_1M_lookup.csv" in out
    assert "lavis.datasets.check quilt1m" in out
    assert download_main(["no_such_set", "--root", "/x"]) == 2


def test_a_download_killed_mid_file_resumes_with_a_range_request(hub, write, tmp_path):
    # huggingface_hub writes in 10 MiB pieces: a ~20 MB zip of noise images; the server stalls a
    # little past the first piece, so the client has written it and is waiting for more
    files = quilt_vqa_files(write, images=8, big=True)
    hub.add("wisdomik/Quilt_VQA", files, token=TOKEN)
    size = len(files["quilt_vqa.zip"])
    assert size > 15 * 2**20
    hub.stall_after = 10 * 2**20 + 2 * 64 * 1024
    root = tmp_path / "quilt_vqa"
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "PYTHONPATH": str(REPO), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    command = [sys.executable, "-m", "lavis.datasets.download", "quilt_vqa", "--root", str(root), "--token", TOKEN]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    parts = root / ".download"
    deadline = time.time() + 180  # a loaded machine starts Python slowly
    while time.time() < deadline:
        found = list(parts.glob("quilt_vqa.zip.*.part")) if parts.exists() else []
        if found and found[0].stat().st_size >= 10 * 2**20:
            break
        time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("the download never started: " + process.communicate()[0].decode()[-2000:])
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = found[0].stat().st_size
    assert 0 < kept < size and not (root / "quilt_vqa.zip").exists()

    hub.stall_after = None
    hub.resume.set()  # the stalled handler sends the rest into the closed socket and logs the cut
    deadline = time.time() + 10
    while not [e for e in hub.log if "/cdn/" in e.path and e.sent] and time.time() < deadline:
        time.sleep(0.05)  # the server logs the cut transfer once it notices the closed socket
    before = len(hub.log)
    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    transfers = [e for e in hub.log[before:] if e.method == "GET" and e.sent and "/cdn/" in e.path]
    assert len(transfers) == 1
    assert transfers[0].range == f"bytes={kept}-" and transfers[0].sent == size - kept
    assert (root / "quilt_vqa.zip").read_bytes() == files["quilt_vqa.zip"]
    assert not list(parts.glob("*.part"))
    assert len(list((root / "images").iterdir())) == 8


def test_partial_files_are_named_by_content(tmp_path):
    from lavis.datasets.download.hub import RemoteFile

    old = RemoteFile("a.zip", 10, "1" * 64, None)
    new = RemoteFile("a.zip", 10, "2" * 64, None)
    assert partial_path(tmp_path, old) != partial_path(tmp_path, new)  # never resume onto other bytes


def test_pmc_vqa_asks_for_its_pinned_commit_and_lays_out_figures_for_the_builder(hub, write, tmp_path, build):
    from lavis.datasets.download import HUB

    header = "Figure_path,Question,Answer,Choice A,Choice B,Choice C,Choice D,Answer_label\n"
    rows = "".join(f"PMC{i}_F1.jpg,What organ is shown?,Liver, A:Liver, B:Lung, C:Heart, D:Skin,A\n" for i in range(3))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            zf.writestr(f"figures/PMC{i}_F1.jpg", write.image_bytes(index=i))
    files = {"train.csv": (header + rows).encode(), "test.csv": (header + rows).encode(),
             "images.zip": archive.getvalue()}
    commit = hub.add("xmcmic/PMC-VQA", files)
    root = tmp_path / "pmc"
    with pytest.raises(DownloadError, match="no such revision"):  # the fake Hub has another history
        download_dataset(Request("pmc_vqa", root), log=lambda _: None)
    assert any(e.path.endswith(f"/revision/{HUB['pmc_vqa'].revision}") for e in hub.log)
    manifest = download_dataset(Request("pmc_vqa", root, revision="main"), log=lambda _: None)
    assert manifest.revision == commit and manifest.requested_revision == "main"
    assert sorted(p.name for p in (root / "images").iterdir()) == ["PMC0_F1.jpg", "PMC1_F1.jpg", "PMC2_F1.jpg"]
    splits = build("pmc_vqa", storage=str(root))
    assert len(splits["train"]) == 3 and splits["test"][0]["answer"] == "A"
    # a rerun stays on the commit it got, not the catalogue's pin
    before = len(hub.log)
    download_dataset(Request("pmc_vqa", root), log=lambda _: None)
    asked = [e.path.rsplit("/", 1)[1] for e in hub.log[before:] if "/revision/" in e.path]
    assert asked == [commit]
