"""The error envelope as a wire format: what `serve_app.edge.api_errors.ApiError.body` sends, as the
model the published contract (serve_app.routes.contract) declares for every error status."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable, e.g. invalid_value, overloaded")
    message: str = Field(description="Names the field and the allowed values; server failures "
                         "name the request id instead of any internal detail")
    param: str | None = Field(description="The field or parameter the error concerns")
    type: Literal["invalid_request_error", "server_error"] = Field(
        description="OpenAI's error type: 4xx invalid_request_error, 5xx server_error")
    request_id: str | None = Field(description="The request's id (X-Request-ID), as logged")


class ErrorEnvelope(BaseModel):
    """Every error the service answers. Under /api/ (the seed's routes) also `success: false`
    and `message`, which the seed's Go worker reads."""

    error: ErrorDetail
    success: Literal[False] | None = Field(None, description="Seed routes (/api/...) only")
    message: str | None = Field(None, description="Seed routes (/api/...) only: error.message")
