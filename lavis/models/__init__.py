"""Models: base class and registry, vision encoders, Q-Former, the BLIP-2 / CLOVER family."""

from lavis.models.base_model import MODELS, BaseModel, register_model  # noqa: F401
from lavis.models.vision.base import VISION_ENCODERS, VisionEncoder, register_vision_encoder  # noqa: F401
