"""``python -m lavis.serve --model PATH``: an OpenAI-compatible chat server with dynamic batching
and a web page (see docs/serving.md)."""

from lavis.apps.serve.app import ServerSettings, create_app  # noqa: F401
