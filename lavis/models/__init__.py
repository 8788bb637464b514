"""Models: base class and registry, vision encoders, Q-Former, the BLIP-2 / CLOVER family."""

from lavis.models import blip2  # noqa: F401  (registers blip2, blip2_t5, ..._instruct)
from lavis.models.api import load_model, load_model_and_preprocess, model_config  # noqa: F401
from lavis.models.base_model import MODELS, BaseModel, register_model  # noqa: F401
from lavis.models.vision.base import VISION_ENCODERS, VisionEncoder, register_vision_encoder  # noqa: F401
