"""Image processors for pathology: PIL image -> normalised float tensor (3, S, S).

Training augmentation respects what a slide is: it has no up or down (random element of the
dihedral group: 90-degree rotations and flips), and colour only varies the way stains vary (HED
jitter); brightness/hue/saturation jitter and grayscale, which destroy stain information, are
not offered. Randomness comes from torch's global RNG, which the runner seeds per item.
"""

from __future__ import annotations

import dataclasses

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, RandomResizedCrop
from torchvision.transforms import functional as TF

from lavis.common.errors import ConfigError
from lavis.common.image_norm import CLIP_MEAN, CLIP_STD
from lavis.processors.base_processor import BaseProcessor, ProcessorConfig, register_processor
from lavis.processors.stain import hed_jitter


@dataclasses.dataclass
class PathologyImageEvalConfig(ProcessorConfig):
    image_size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    def validate(self) -> None:
        if self.image_size <= 0:
            raise ConfigError(f"'image_size' must be > 0, got {self.image_size}")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"'std' must be positive, got {list(self.std)}")


@dataclasses.dataclass
class PathologyImageTrainConfig(PathologyImageEvalConfig):
    # RandomResizedCrop area range (fraction of the image).
    min_scale: float = 0.5
    max_scale: float = 1.0
    # Random 90-degree rotation and flip (the 8 symmetries of a square).
    flip_rotate: bool = True
    # HED jitter strength (alpha in 1 +- s, beta in +-s, OD units); 0 disables, ~0.05 is typical.
    stain_jitter: float = 0.0

    def validate(self) -> None:
        super().validate()
        if not 0 < self.min_scale <= self.max_scale <= 1:
            raise ConfigError(f"need 0 < min_scale <= max_scale <= 1, got {self.min_scale}, {self.max_scale}")
        if self.stain_jitter < 0:
            raise ConfigError(f"'stain_jitter' must be >= 0, got {self.stain_jitter}")


def random_dihedral(image: torch.Tensor) -> torch.Tensor:
    """One of the 8 rotations/reflections of a (C, H, W) tensor, chosen with torch's RNG."""
    turns = int(torch.randint(0, 4, ()).item())
    flip = bool(torch.randint(0, 2, ()).item())
    out = torch.rot90(image, turns, dims=(-2, -1))
    return out.flip(-1) if flip else out


class _PathologyImageProcessor(BaseProcessor):
    """Shared tail: PIL -> float [0, 1] -> optional tensor augmentation -> normalise."""

    def __init__(self, cfg: PathologyImageEvalConfig) -> None:
        super().__init__(cfg)
        self._mean = torch.tensor(cfg.mean).view(3, 1, 1)
        self._std = torch.tensor(cfg.std).view(3, 1, 1)

    def resize(self, image: Image.Image) -> Image.Image:
        raise NotImplementedError  # abstract: each processor sizes the image its own way

    def augment(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if not isinstance(image, Image.Image):
            raise TypeError(f"{self.cfg.name}: expected a PIL image, got {type(image).__name__}")
        image = image if image.mode == "RGB" else image.convert("RGB")  # loaders already give RGB
        tensor = TF.pil_to_tensor(self.resize(image)).float().div_(255.0)
        tensor = self.augment(tensor)
        return (tensor - self._mean) / self._std


@register_processor("pathology_image_eval")
class PathologyImageEval(_PathologyImageProcessor):
    """Resize to image_size x image_size (bicubic) and normalise."""

    Config = PathologyImageEvalConfig
    deterministic = True

    def resize(self, image: Image.Image) -> Image.Image:
        size = self.cfg.image_size
        return image.resize((size, size), Image.Resampling.BICUBIC)


@register_processor("pathology_image_train")
class PathologyImageTrain(_PathologyImageProcessor):
    """RandomResizedCrop (bicubic), dihedral symmetry, optional HED stain jitter, normalise."""

    Config = PathologyImageTrainConfig

    def __init__(self, cfg: PathologyImageTrainConfig) -> None:
        super().__init__(cfg)
        self._crop = RandomResizedCrop(
            cfg.image_size,
            scale=(cfg.min_scale, cfg.max_scale),
            interpolation=InterpolationMode.BICUBIC,
        )

    def resize(self, image: Image.Image) -> Image.Image:
        return self._crop(image)

    def augment(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.cfg.flip_rotate:
            tensor = random_dihedral(tensor)
        if self.cfg.stain_jitter > 0:
            tensor = hed_jitter(tensor, self.cfg.stain_jitter)
        return tensor
