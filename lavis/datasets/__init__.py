"""Data sets: builders (one per data set), dataset classes, tools and the demo data."""

from lavis.datasets.builders.base_builder import BUILDERS, BaseDatasetBuilder, register_builder  # noqa: F401
