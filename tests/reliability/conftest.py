"""Fixtures for the reliability cases: a process that holds an output folder's lock, tiny run
configs on the toy components, and the real entry points in subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "tests" / "plugins"
if str(PLUGINS) not in sys.path:  # in-process runs import the toy components (run.imports)
    sys.path.insert(0, str(PLUGINS))

HOLD = textwrap.dedent(
    """
    import sys, time
    from lavis.common.output_lock import OutputLock
    OutputLock(sys.argv[1], sys.argv[2]).acquire()
    print("held", flush=True)
    time.sleep(120)
    """
)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGINS), str(REPO), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def hold_lock():
    """``hold_lock(folder, what)``: another live process owns ``folder`` until the test ends."""
    procs: list[subprocess.Popen] = []

    def hold(folder: Path, what: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), what], stdout=subprocess.PIPE,
                                text=True, env=child_env())
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.fixture
def toy_run(tmp_path):
    """``toy_run(run={...}, model={...}, data={...}, name="run")`` -> a run YAML on the toy components."""

    def make(run: dict | None = None, model: dict | None = None, data: dict | None = None, name: str = "run",
             dataset: str = "toy_regression", arch: str = "toy_regression", task: str = "instruction_tuning") -> Path:
        cfg = {
            "model": {"arch": arch, **(model or {})},
            "datasets": {dataset: data or {}},
            "run": {"task": task, "imports": ["toy_components"], "output_dir": str(tmp_path / "out"),
                    "num_workers": 0, "progress_bar": False, "device": "cpu", **(run or {})},
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


@pytest.fixture
def spawn():
    """``spawn([script, *args])`` -> a running entry point (stdout and stderr piped), killed at the end."""
    procs: list[subprocess.Popen] = []

    def start(args: list[str], env: dict | None = None) -> subprocess.Popen:
        # its own process group: a test can signal the run and its DataLoader workers as a terminal does
        proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env={**child_env(), **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            for pid in [*descendants(proc.pid), proc.pid]:  # torchrun's workers have sessions of their own
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        proc.communicate()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first found, then theirs), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in map(int, (task / "children").read_text().split()):
                found += [child, *descendants(child)]
    return found


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    """Wait until ``path`` exists while ``proc`` runs (fail if it ends first)."""
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} ended before {path} appeared:\n{proc.communicate()[1][-3000:]}")
        if time.time() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.05)


@pytest.fixture(name="wait_for")
def wait_for_fixture():
    return wait_for


@pytest.fixture
def entry():
    """``entry([script, *args], timeout=240)`` -> CompletedProcess of a real entry point (no check)."""

    def launch(args: list[str], timeout: int = 240, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=REPO, env={**child_env(), **(env or {})},
                              capture_output=True, text=True, timeout=timeout)

    return launch


@pytest.fixture(autouse=True)
def _fresh_console_logging():
    """In-process runs set up console logging once per process, bound to the stream of the test
    that ran first; undo it after each test so the next one logs into its own captured stream."""
    import logging

    root = logging.getLogger()
    before = list(root.handlers)
    yield
    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)
    root._lavis_configured = False  # type: ignore[attr-defined]


# ---- a QUILT-VQA set in its release layout, some images broken on purpose ---------------------------
def write_quilt_vqa(root: Path, broken: dict[int, str], num_questions: int = 12) -> None:
    """QUILT-VQA's release layout: questions JSONL, answers JSON, images/ (one image per question)."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    questions, answers = [], []
    for i in range(num_questions):
        name, closed = f"img{i}.png", i % 3 != 0
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / name)
        if broken.get(i) == "missing":
            (root / "images" / name).unlink()
        elif broken.get(i) == "truncated":
            data = (root / "images" / name).read_bytes()
            (root / "images" / name).write_bytes(data[: len(data) // 2])
        elif broken.get(i) == "not_an_image":
            (root / "images" / name).write_text("<html>404 not found</html>")
        elif broken.get(i) == "fifo":
            (root / "images" / name).unlink()
            os.mkfifo(root / "images" / name)  # nothing ever writes to it: reading would block
        questions.append({"question_id": f"q{i}", "image": name,
                          "text": "Is there necrosis?" if closed else "What does the tissue show?"})
        answers.append({"id": f"q{i}", "answer": ("Yes, there is." if i % 2 else "No, there is not.") if closed
                        else "Glands lined by columnar epithelium.", "answer_type": "CLOSED" if closed else "OPEN",
                        **({"yes_no_answer": "yes" if i % 2 else "no"} if closed else {})})
    (root / "quiltvqa_test_wo_ans.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (root / "quiltvqa_test_w_ans.json").write_text(json.dumps(answers))


@pytest.fixture
def vqa_run(tmp_path, toy_run):
    """``vqa_run(broken, **run_keys)`` -> a run YAML evaluating the toy image model on a 12-question
    QUILT-VQA set under ``tmp_path / "quilt_vqa"`` (broken: question index -> missing, truncated,
    not_an_image or fifo)."""

    def make(broken: dict[int, str], **run) -> Path:
        root = tmp_path / "quilt_vqa"
        write_quilt_vqa(root, broken)
        data = {"storage": str(root), "vis_processor": {"eval": {"name": "pathology_image_eval", "image_size": 32}}}
        keys = {"test_splits": ["test"], "batch_size_eval": 4, "protocols": ["quilt", "strict"], **run}
        return toy_run(keys, data=data, dataset="quilt_vqa", arch="toy_image_vqa", task="vqa")

    return make


@pytest.fixture(name="write_quilt_vqa")
def write_quilt_vqa_fixture():
    """``write_quilt_vqa(root, broken)``: the QUILT-VQA files of ``vqa_run`` in a folder of your choice."""
    return write_quilt_vqa


# ---- the commands of the second round: a tiny model, faults of the file system, a watchdog ---------
@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, minilm_dir) -> Path:
    """A tiny InstructBLIP-T5 as the self-describing folder ``convert --to ours`` writes (random
    weights: these tests are about refusals and plumbing, never about answers)."""
    import torch

    from lavis.models import load_model, save_model_folder
    from lavis.models.llm.tiny import save_tiny_t5

    root = tmp_path_factory.mktemp("tiny_model")
    t5 = save_tiny_t5(root / "t5", ["is the tissue dense", "yes", "no", "what is shown"] * 8, vocab_size=96)
    torch.manual_seed(0)
    model = load_model("blip2_t5_instruct", "tiny", qformer={"tokenizer": str(minilm_dir)}, llm={"name_or_path": str(t5)})
    return save_model_folder(model, root / "model")


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: creating anything under ``folder`` fails with EROFS, as on a read-only
    mount (a root user ignores mode bits, so a chmod could not show it)."""
    import errno

    real_open, real_mkdir = os.open, os.mkdir

    def install(folder: Path) -> None:
        def refuse(path) -> None:
            if str(path).startswith(str(folder)):
                raise OSError(errno.EROFS, "Read-only file system", str(path))

        def open_(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                refuse(path)
            return real_open(path, flags, *args, **kwargs)

        def mkdir(path, *args, **kwargs):
            refuse(path)
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", open_)
        monkeypatch.setattr(os, "mkdir", mkdir)

    return install


@pytest.fixture
def disk_full_run():
    """``disk_full_run([script or -m, *args], bytes)`` -> CompletedProcess of a real command whose
    writes fail once a file passes ``bytes`` (RLIMIT_FSIZE with SIGXFSZ ignored: write() fails
    with EFBIG in every writer, Python's or a library's own, as it fails with ENOSPC on a full disk)."""
    import resource

    def launch(args: list[str], limit: int, timeout: int = 240) -> subprocess.CompletedProcess:
        def limit_file_size() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # kept across exec: write() returns EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        return subprocess.run([sys.executable, *args], cwd=REPO, env=child_env(), capture_output=True, text=True,
                              timeout=timeout, preexec_fn=limit_file_size)

    return launch


def watched(command, release, seconds: float = 60.0):
    """``command()`` in a thread; when it has not returned after ``seconds`` (blocked on a FIFO, a
    server that never answers), ``release()`` unblocks it and the test fails: a regression fails
    its test instead of hanging the suite. Returns what ``command`` returned."""
    import threading

    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = command()
        except BaseException as err:  # noqa: BLE001  (re-raised in the test's thread)
            outcome["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    hung = thread.is_alive()
    if hung:
        release()
        thread.join(30)
    assert not hung, f"the command was still blocked after {seconds:.0f} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture(name="watched")
def watched_fixture():
    return watched
