"""Answering questions about images with a trained model: the one core that the HTTP server
(``lavis.serve``), the terminal chat (``lavis.chat``) and batch prediction (``lavis.predict``) share.

- :mod:`~lavis.inference.images`: decode an uploaded image within byte and pixel limits;
- :mod:`~lavis.inference.conversation`: fold earlier turns into one instruction within the model's budget;
- :mod:`~lavis.inference.answerer`: one batched model call for many questions, with token counts,
  finish reasons and yes/no probabilities for closed questions;
- :mod:`~lavis.inference.questions`: question files (QUILT-VQA, LLaVA-Med) and image folders as rows.
"""

from lavis.inference.answerer import Answer, Answerer, Choice, Decoding, Query  # noqa: F401
from lavis.inference.errors import InputError  # noqa: F401
