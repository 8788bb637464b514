"""Evaluation metrics faithful to the published scripts: VQA protocols and COCO caption metrics.

``lavis.metrics.vqa`` and ``lavis.metrics.captioning`` are packages whose ``__main__`` is the
command, so ``python -m lavis.metrics.vqa`` works however the rest of ``lavis`` imports them.
"""
