"""Entry points: what ``train.py``, ``train_blip2qformer.py``, ``evaluate.py`` and the
feature-cache tool share (argument parsing, one run from a config, exit codes)."""

from lavis.cli.run import build_parser, load, main, run  # noqa: F401
