"""Errors of the release host.

`ApiError` is what a route raises to answer a GitHub-style error JSON; the
handler turns it into a response, so no traceback ever reaches a client.
`HostError` is a setup problem (data folder, TLS files) shown by the CLI.
"""

from __future__ import annotations

from typing import Any

from publisher.errors import PublisherError

DOCS_URL = "https://docs.github.com/rest"


class HostError(PublisherError):
    """The host cannot start or store something (bad data folder, bad TLS files)."""


class ApiError(PublisherError):
    """An HTTP error answered as GitHub does: `{"message", "documentation_url", "status"}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        documentation_url: str = DOCS_URL,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}
        self.documentation_url = documentation_url

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        body["documentation_url"] = self.documentation_url
        body["status"] = str(self.status)
        return body


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def validation_failed(resource: str, code: str, field: str, message: str = "") -> ApiError:
    """GitHub's 422: one entry in `errors` naming the resource, the code and the field."""
    error: dict[str, Any] = {"resource": resource, "code": code, "field": field}
    if message:
        error["message"] = message
    return ApiError(422, "Validation Failed", errors=[error])
