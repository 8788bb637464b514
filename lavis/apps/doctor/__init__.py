"""``python -m lavis.doctor --cfg-path RUN.yaml``: check everything a run needs before a GPU hour
is spent, without loading weights, and print one table with a verdict per line (exit 1 on any
FAIL). See the README, "Pre-flight check".

- ``weights``: image encoder, Q-Former BERT init and tokenizer, LLM and its tokenizer;
- ``checkpoints``: init / strict / resume checkpoints and what they were trained with;
- ``data``: every data set builds and its first items load;
- ``resources``: disk per file system, GPU memory per card and the largest batch that fits.
"""

from lavis.apps.doctor.core import run_doctor  # noqa: F401
from lavis.apps.doctor.report import FAIL, PASS, SKIP, WARN, Report  # noqa: F401
