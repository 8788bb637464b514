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
    sleep_s: float = 0.0  # slows each step, so a test can signal the process while it trains


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


# ---- a toy VQA model and data set, for the distributed evaluation path ----------------------
@dataclasses.dataclass
class ToyVQAModelConfig(BaseModelConfig):
    arch: str = "toy_vqa"
    dim: int = 4


@register_model("toy_vqa")
class ToyVQA(BaseModel):
    """Answers closed questions by the sign of a linear score, open ones with a fixed phrase."""

    Config = ToyVQAModelConfig

    def __init__(self, cfg: ToyVQAModelConfig) -> None:
        super().__init__()
        self.score = nn.Linear(cfg.dim, 1)
        with torch.no_grad():
            self.score.weight.fill_(1.0)
            self.score.bias.zero_()

    @classmethod
    def from_config(cls, cfg: ToyVQAModelConfig) -> ToyVQA:
        return cls(cls.parse_config(cfg))

    def forward(self, samples: dict) -> dict[str, torch.Tensor]:
        return {"loss": self.score(samples["x"]).pow(2).mean()}

    def predict_answers(self, samples: dict, **generation) -> list[str]:
        positive = (self.score(samples["x"]).squeeze(-1) > 0).tolist()
        return [
            ("yes" if pos else "no") if kind == "CLOSED" else f"tissue with {'many' if pos else 'few'} nuclei"
            for pos, kind in zip(positive, samples["answer_type"])
        ]

    def rank_answers(self, samples: dict, candidates=("yes", "no")) -> list[str]:
        return [candidates[0] if s > 0 else candidates[1] for s in self.score(samples["x"]).squeeze(-1).tolist()]


class ToyVQAData(Dataset):
    def __init__(self, n: int, dim: int) -> None:
        g = torch.Generator().manual_seed(7)
        self.x = torch.randn(n, dim, generator=g)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        closed = i % 3 != 0
        truth = bool(i % 2)
        return {
            "x": self.x[i],
            "question_id": f"q{i}",
            "text_input": f"Is there something in region {i}?" if closed else f"What is in region {i}?",
            "answer": ("yes" if truth else "no") if closed else "tissue with many nuclei",
            "answer_type": "CLOSED" if closed else "OPEN",
            "image_path": f"region_{i}.png",
        }


@dataclasses.dataclass
class ToyVQADataConfig(BaseBuilderConfig):
    num_questions: int = 13
    dim: int = 4


@register_builder("toy_vqa")
class ToyVQABuilder(BaseDatasetBuilder):
    Config = ToyVQADataConfig

    def build(self) -> dict[str, Dataset]:
        return {"test": ToyVQAData(self.cfg.num_questions, self.cfg.dim)}


# ---- a toy VQA model that reads real images, for the evaluation-accounting cases -------------
@dataclasses.dataclass
class ToyImageVQAModelConfig(BaseModelConfig):
    arch: str = "toy_image_vqa"


@register_model("toy_image_vqa")
class ToyImageVQA(BaseModel):
    """Answers closed questions by the image's mean intensity, open ones with a fixed phrase; runs
    behind the real builders, processors and VQA task (only the model is a toy)."""

    Config = ToyImageVQAModelConfig

    def __init__(self, cfg: ToyImageVQAModelConfig) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    @classmethod
    def from_config(cls, cfg: ToyImageVQAModelConfig) -> ToyImageVQA:
        return cls(cls.parse_config(cfg))

    def forward(self, samples: dict) -> dict[str, torch.Tensor]:
        return {"loss": (samples["image"].mean() * self.scale) ** 2}

    def predict_answers(self, samples: dict, **generation) -> list[str]:
        bright = (samples["image"].flatten(1).mean(1) * self.scale > 0).tolist()
        return [
            ("yes" if b else "no") if kind == "CLOSED" else "glands lined by columnar epithelium"
            for b, kind in zip(bright, samples["answer_type"])
        ]
