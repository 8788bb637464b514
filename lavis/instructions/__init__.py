"""Instruction data for CLOVER stage 2: chat-model generated Q&A pairs and deterministic templates.

- ``io.read_captions``: Quilt-1M lookup CSV / JSONL captions with metadata.
- ``generate``: per-caption chat requests (``client``), reply parsing (``parsing``), the pair
  filter (``filters``), resumable raw output (``store``), cost (``pricing``), pacing (``ratelimit``).
- ``templates.build_template_instructions``: detailed-description, open and closed questions.
- ``outputs``: instructions.jsonl, the LLaVA conversation export, summary.json and its plot.
- ``cli``: the ``generate_instructions.py`` command line.
"""

from lavis.instructions import filters, io, outputs, parsing, pricing, protocol, store, templates  # noqa: F401
from lavis.instructions.io import read_captions  # noqa: F401
from lavis.instructions.templates import TemplateBank, build_template_instructions, load_template_bank  # noqa: F401
