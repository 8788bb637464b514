"""Models: base class and registry, vision encoders, Q-Former, the BLIP-2 / CLOVER family, weight interop."""

# Importing these registers their classes: blip2 (blip2, blip2_t5, ..._instruct), vision
# (eva_clip_g, clip_L, open_clip, hf_clip), interop (blip2_llm, the HF converters).
from lavis.models import blip2, interop, vision  # noqa: F401
from lavis.models.api import load_model, load_model_and_preprocess, model_config  # noqa: F401
from lavis.models.base_model import MODELS, BaseModel, register_model  # noqa: F401
from lavis.models.interop import from_hf, load_model_folder, save_model_folder, to_hf  # noqa: F401
from lavis.models.pretrained import PretrainedModel, load_pretrained  # noqa: F401
from lavis.models.vision.base import VISION_ENCODERS, VisionEncoder, register_vision_encoder  # noqa: F401
