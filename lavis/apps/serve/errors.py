"""Errors in the OpenAI wire format: ``{"error": {"message", "type", "param", "code"}}`` with a
4xx status for what the client did wrong and 5xx for what went wrong here."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from lavis.apps.inference.errors import InputError

_TYPES = {401: "authentication_error", 404: "invalid_request_error", 429: "rate_limit_error"}


class APIError(Exception):
    """An error the server answers with (status, OpenAI-style body)."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    @classmethod
    def from_input(cls, err: InputError) -> APIError:
        return cls(err.status, err.message, err.code, err.param)

    @property
    def type(self) -> str:
        if self.status >= 500:
            return "server_error"
        return _TYPES.get(self.status, "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def bad(message: str, param: str | None = None, code: str = "invalid_value") -> APIError:
    """A 400 naming the request field (``param``) that is wrong."""
    return APIError(400, message, code, param)
