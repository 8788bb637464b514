"""Command-line data tools (``python -m lavis.datasets.tools.<name>``)."""
