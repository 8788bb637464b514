"""The image normalisation BLIP-2's encoders were trained with (OpenAI CLIP's per-channel mean and
standard deviation), shared by the image processors and the Hugging Face interop."""

from __future__ import annotations

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
