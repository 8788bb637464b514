"""``python -m lavis.datasets.download NAME --root DIR``: fetch a public data set from the
Hugging Face Hub into the layout its builder reads (see docs/datasets.md, "Getting the data").

- ``catalog``: where each set lives (repo, files, archives, builder keys) and the manual steps
  for data without a public download (Quilt-1M, LLaVA-Med);
- ``hub``: listing, resumable verified file fetches through ``huggingface_hub``;
- ``archives``: unpacking image zips to the exact paths the annotation files name;
- ``prepare``: one set end to end, ending in ``MANIFEST.json``.
"""

from lavis.datasets.download.catalog import HUB, MANUAL, known_names  # noqa: F401
from lavis.datasets.download.prepare import Request, download_dataset  # noqa: F401
