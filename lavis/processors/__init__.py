"""Image and text processors."""

from lavis.processors.base_processor import PROCESSORS, BaseProcessor, build_processor, register_processor  # noqa: F401
