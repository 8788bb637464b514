"""Data sets: builders (one per data set), dataset classes, tools and the demo data."""

from lavis.datasets import builders  # noqa: F401  (fills BUILDERS)
from lavis.datasets.bad_data import SkippedSample  # noqa: F401
from lavis.datasets.builders.base_builder import BUILDERS, BaseDatasetBuilder, register_builder  # noqa: F401
from lavis.datasets.collate import collate  # noqa: F401
from lavis.datasets.mixture import MixtureDataset  # noqa: F401
