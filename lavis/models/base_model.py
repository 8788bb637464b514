"""Base class and registry for every trainable model (stage 1, stage 2, user models)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from lavis.common.errors import CheckpointError, ConfigError
from lavis.common.paths import config_path
from lavis.common.registry import Registry
from lavis.common.schema import as_config


@dataclasses.dataclass
class BaseModelConfig:
    """Keys every model section has; a model's own ``Config`` subclasses this."""

    arch: str
    model_type: str = "default"
    # A checkpoint to load after building (ours, or a LAVIS .pth); None keeps the built weights.
    checkpoint: str | None = None


class BaseModel(nn.Module):
    """A registered model: built from its typed ``Config``; ``forward(samples)`` returns losses.

    Subclasses set ``Config`` (a dataclass subclassing :class:`BaseModelConfig`) and
    ``MODEL_TYPES`` (model_type -> YAML under ``configs/``), and implement ``from_config``.
    """

    Config: ClassVar[type] = BaseModelConfig
    MODEL_TYPES: ClassVar[dict[str, str]] = {}

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def default_config_path(cls, model_type: str) -> Path:
        try:
            return config_path(cls.MODEL_TYPES[model_type])
        except KeyError:
            known = ", ".join(sorted(cls.MODEL_TYPES)) or "(none)"
            raise ConfigError(f"{cls.__name__} has no model_type '{model_type}'. Known: {known}") from None

    @classmethod
    def parse_config(cls, cfg: Mapping[str, Any] | Any, where: str = "model") -> Any:
        return as_config(cls.Config, cfg, where)

    @classmethod
    def from_config(cls, cfg: Any) -> BaseModel:
        raise NotImplementedError

    # ---- training contract ----------------------------------------------------------------
    def forward(self, samples: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Return a dict with a scalar ``loss`` and, optionally, its components."""
        raise NotImplementedError

    # ---- parameters ---------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def trainable_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if p.requires_grad)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: trainable parameters only (frozen parts come from their source)."""
        return {n: p.detach() for n, p in self.trainable_named_parameters()}

    def load_trainable_state_dict(self, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Load exactly the trainable set; missing or unexpected keys fail, naming them."""
        expected = dict(self.trainable_named_parameters())
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise CheckpointError(
                f"{source} does not match the model's trainable parameters: "
                f"missing {missing[:10]}{' ...' if len(missing) > 10 else ''} "
                f"({len(missing)} in all), unexpected {unexpected[:10]}"
                f"{' ...' if len(unexpected) > 10 else ''} ({len(unexpected)} in all)"
            )
        with torch.no_grad():
            for name, param in expected.items():
                value = state[name]
                if value.shape != param.shape:
                    raise CheckpointError(
                        f"{source}: '{name}' has shape {tuple(value.shape)}, model expects {tuple(param.shape)}"
                    )
                param.copy_(value.to(param.dtype))

    def num_parameters(self, trainable: bool | None = None) -> int:
        """Count parameters: all (None), trainable only (True) or frozen only (False)."""
        return sum(
            p.numel() for p in self.parameters() if trainable is None or p.requires_grad == trainable
        )

    def autocast(self, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
        """Autocast on this model's device type; a no-op for fp32 / None."""
        if dtype is None or dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)


MODELS: Registry[type[BaseModel]] = Registry("model", BaseModel)
register_model = MODELS.register
