"""Seeding the torch, numpy and python RNGs: globally per rank, or around one block."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

from lavis.common.dist import get_rank


def seed_all(seed: int) -> None:
    """Seed the torch (CPU and CUDA), numpy and python RNGs."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def seed_everything(seed: int) -> None:
    """Per-rank seeds: ranks differ (dropout, sampling) yet each is reproducible."""
    seed_all(seed + get_rank())


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch/numpy/python RNGs seeded; restore the caller's states after."""
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()
    py_state = random.getstate()
    seed_all(seed)
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(np_state)
        random.setstate(py_state)
