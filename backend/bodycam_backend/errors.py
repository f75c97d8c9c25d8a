"""Errors that become one JSON error response (docs/backend-api.md section 1)."""

from __future__ import annotations

from typing import Any

from bodycam.errors import BodycamError


class BackendError(BodycamError, RuntimeError):
    """A backend problem a person can fix (bad setup, missing data dir); the CLI prints one line."""


class ApiError(Exception):
    """An HTTP error with a stable code: ``{"error": code, "message": ..., "status": ..., **extra}``."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "status": self.status, **self.extra}


class Rejected(ApiError):
    """A segment or audit upload that failed verification: flagged, nothing stored."""

    def __init__(self, reason: str, message: str, *, status: int = 422, code: str = "rejected") -> None:
        super().__init__(status, code, message, reason=reason)
        self.reason = reason
