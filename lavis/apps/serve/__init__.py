"""``python -m lavis.serve --model PATH``: an OpenAI-compatible chat server with continuous
batching and streamed answers, slides to pan, zoom and ask about, and a web page (see docs/serving.md)."""

from lavis.apps.serve.app import ServerSettings, create_app  # noqa: F401
