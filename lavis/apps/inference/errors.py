"""The one error a bad request raises, carrying what an HTTP server answers with."""

from __future__ import annotations

from lavis.common.errors import DataError


class InputError(DataError):
    """A request input the model cannot take: the message names it; ``code`` / ``param`` /
    ``status`` are what the OpenAI-style server puts in its error body and status line."""

    def __init__(self, message: str, code: str = "invalid_request", param: str | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.status = status
