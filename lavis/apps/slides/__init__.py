"""Whole-slide analysis: ask a question of every tissue tile of a slide; get a heatmap, a
QuPath-ready GeoJSON, the top tiles and a tiles table (``python -m lavis.slides``, docs/slides.md).

Modules, in the order a job uses them: ``reader`` (OpenSlide formats and plain images), ``plan``
(pyramid level, read size, tile grid), ``tissue`` (mask on a thumbnail), ``loader`` (tiles read
in DataLoader workers), ``features`` (per-slide frozen-encoder cache), ``questions`` (modes and
answering a batch), ``job`` (resumable, sharded run), ``outputs`` and ``render`` (files), ``demo``
(the demo's heatmap and its agreement with pixel density).
"""

from lavis.apps.slides.job import SlideSettings, analyze_slide, prepare
from lavis.apps.slides.questions import Generation
from lavis.apps.slides.reader import SlideInfo, open_slide
from lavis.apps.slides.tissue import TissueSettings

__all__ = ["Generation", "SlideInfo", "SlideSettings", "TissueSettings", "analyze_slide", "open_slide", "prepare"]
