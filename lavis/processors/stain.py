"""Stain augmentation in HED space (haematoxylin, eosin, DAB) by colour deconvolution.

Ruifrok & Johnston (2001): optical density ``OD = -ln(RGB)`` is a linear mix of the stains'
absorbance vectors, so ``stains = OD @ inv(M)`` with ``M``'s rows the H, E and DAB vectors.
Jittering each stain channel as ``s * alpha + beta`` (Tellez et al. 2018, "HED light") mimics
lab-to-lab staining variation while keeping what each stain shows - unlike hue/saturation
jitter, which can turn eosin into haematoxylin.

The stain vectors are those of scikit-image's ``rgb_from_hed``; the concentrations here are in
plain OD units (scikit-image divides by ``-ln(1e-6)``) and negative values are kept, so
``hed_to_rgb(rgb_to_hed(x)) == x`` up to float error.
"""

from __future__ import annotations

import torch

_H = (0.65, 0.70, 0.29)
_E = (0.07, 0.99, 0.11)
_DAB = (0.27, 0.57, 0.78)
_MIN_INTENSITY = 1e-6  # avoids log(0) on pure black, as scikit-image does


RGB_FROM_HED = torch.tensor([_H, _E, _DAB], dtype=torch.float64)  # rows: unit-ish absorbance vectors
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)


def rgb_to_hed(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] -> (3, H, W) stain concentrations (OD units, may be negative)."""
    od = -torch.log(rgb.clamp(min=_MIN_INTENSITY))
    matrix = HED_FROM_RGB.to(rgb.dtype)
    return torch.einsum("chw,cd->dhw", od, matrix)


def hed_to_rgb(hed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hed`, clipped to [0, 1]."""
    matrix = RGB_FROM_HED.to(hed.dtype)
    od = torch.einsum("dhw,dc->chw", hed, matrix)
    return torch.exp(-od).clamp(0.0, 1.0)


def hed_jitter(rgb: torch.Tensor, strength: float) -> torch.Tensor:
    """Per stain: ``s * U(1-strength, 1+strength) + U(-strength, strength)``; uses torch's RNG."""
    alpha = 1.0 + (torch.rand(3, 1, 1, dtype=rgb.dtype) * 2 - 1) * strength
    beta = (torch.rand(3, 1, 1, dtype=rgb.dtype) * 2 - 1) * strength
    return hed_to_rgb(rgb_to_hed(rgb) * alpha + beta)
