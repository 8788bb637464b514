"""An image processor that ignores the image: the image-blind ablation (same model, no pixels).

Every input becomes a uniform image of the normalisation mean, i.e. all zeros after
normalisation, of the configured size. Swap it in for ``pathology_image_eval`` to measure how
much of a score comes from the question alone.
"""

from __future__ import annotations

from typing import Any

import torch

from lavis.processors.base_processor import BaseProcessor, register_processor
from lavis.processors.image_processors import PathologyImageEvalConfig


@register_processor("blank_image")
class BlankImage(BaseProcessor):
    Config = PathologyImageEvalConfig
    deterministic = True

    def __call__(self, item: Any) -> torch.Tensor:
        return torch.zeros(3, self.cfg.image_size, self.cfg.image_size)
