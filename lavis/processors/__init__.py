"""Image and text processors."""

from lavis.processors import blank_image, image_processors, text_processors  # noqa: F401,E402
from lavis.processors.base_processor import PROCESSORS, BaseProcessor, build_processor, register_processor  # noqa: F401
