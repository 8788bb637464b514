"""Image encoders: importing this package registers them in ``VISION_ENCODERS``.

``eva_clip_g`` (EVA-CLIP ViT-g/14), ``clip_L`` (CLIP ViT-L/14), ``open_clip`` (any open_clip ViT,
e.g. QuiltNet) and ``hf_clip`` (a Hugging Face CLIP tower, e.g. PLIP). Each maps images
(B, 3, S, S) to tokens (B, num_tokens, num_features), CLS first, before any final norm.
"""

from lavis.models.vision import clip_vit, eva_vit, hf_clip, open_clip_encoder  # noqa: F401
