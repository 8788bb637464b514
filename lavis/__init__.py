"""CLOVER framework: BLIP-2-style pathology vision-language training and evaluation.

Importing ``lavis`` imports every component package so that all registries are filled.
"""

from lavis import common, datasets, metrics, models, processors, runners, tasks  # noqa: F401

__version__ = "0.1.0"
