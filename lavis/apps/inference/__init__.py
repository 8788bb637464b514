"""Answering questions about images with a trained model: the one core that the HTTP server
(``lavis.apps.serve``), the terminal chat (``lavis.apps.chat``) and batch prediction (``lavis.apps.predict``) share.

- :mod:`~lavis.apps.inference.images`: decode an uploaded image within byte and pixel limits;
- :mod:`~lavis.apps.inference.conversation`: fold earlier turns into one instruction within the model's budget;
- :mod:`~lavis.apps.inference.answerer`: one batched model call for many questions, with token counts,
  finish reasons and yes/no probabilities for closed questions;
- :mod:`~lavis.apps.inference.questions`: question files (QUILT-VQA, LLaVA-Med) and image folders as rows.
"""

from lavis.apps.inference.answerer import Answer, Answerer, Choice, Decoding, Query  # noqa: F401
from lavis.apps.inference.errors import InputError  # noqa: F401
