"""A toy model and data set registered from outside the package, as a researcher would.

Runner tests use them to check the training machinery (distribution, resume, checkpoints)
quickly; the real models are exercised by their own tests and the end-to-end ones.
"""

from __future__ import annotations

import dataclasses
import time

import torch
from torch import nn
from torch.utils.data import Dataset

from lavis.common.checkpoint import load_weights
from lavis.datasets.bad_data import SkippedSample
from lavis.datasets.builders.base_builder import BaseBuilderConfig, BaseDatasetBuilder, register_builder
from lavis.models.base_model import BaseModel, BaseModelConfig, register_model


@dataclasses.dataclass
class ToyModelConfig(BaseModelConfig):
    arch: str = "toy_regression"
    dim: int = 8
    hidden: int = 16
    dropout: float = 0.0
    sleep_s: float = 0.0  # slows each step so a test can kill the process mid-epoch


@register_model("toy_regression")
class ToyRegression(BaseModel):
    Config = ToyModelConfig

    def __init__(self, cfg: ToyModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frozen = nn.Linear(cfg.dim, cfg.hidden)  # stands in for a frozen encoder
        self.frozen.requires_grad_(False)
        self.head = nn.Sequential(
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.LayerNorm(cfg.hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, 1),
        )

    @classmethod
    def from_config(cls, cfg: ToyModelConfig) -> ToyRegression:
        return cls(cls.parse_config(cfg))

    def load_checkpoint(self, path: str) -> None:
        self.load_trainable_state_dict(load_weights(path), source=path)

    def forward(self, samples: dict) -> dict[str, torch.Tensor]:
        if self.cfg.sleep_s:
            time.sleep(self.cfg.sleep_s)
        pred = self.head(self.frozen(samples["x"])).squeeze(-1)
        loss = nn.functional.mse_loss(pred, samples["y"])
        return {"loss": loss, "loss_mse": loss.detach()}


class ToyData(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, noise: float, bad_every: int) -> None:
        self.x, self.y, self.noise, self.bad_every = x, y, noise, bad_every

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        if self.bad_every and index % self.bad_every == 0:
            return SkippedSample(f"toy/{index}.png", "unreadable on purpose")
        x = self.x[index]
        if self.noise:  # augmentation drawn from the global RNG, as image transforms do
            x = x + self.noise * torch.randn_like(x)
        return {"x": x, "y": self.y[index]}


@dataclasses.dataclass
class ToyDataConfig(BaseBuilderConfig):
    num_train: int = 64
    num_val: int = 16
    dim: int = 8
    seed: int = 0
    noise: float = 0.0
    bad_every: int = 0


@register_builder("toy_regression")
class ToyBuilder(BaseDatasetBuilder):
    Config = ToyDataConfig

    def build(self) -> dict[str, Dataset]:
        cfg = self.cfg
        g = torch.Generator().manual_seed(cfg.seed)
        w = torch.randn(cfg.dim, generator=g)
        out = {}
        for split, n in (("train", cfg.num_train), ("val", cfg.num_val)):
            x = torch.randn(n, cfg.dim, generator=g)
            y = x @ w + 0.1 * torch.randn(n, generator=g)
            out[split] = ToyData(x, y, cfg.noise if split == "train" else 0.0, cfg.bad_every)
        return out
