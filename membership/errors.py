"""Domain errors: each has a stable slug that the API turns into an RFC 9457 problem type.

The status is a plain int so that `membership/` stays free of web imports.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    code: ClassVar[str] = "domain-error"
    title: ClassVar[str] = "The request cannot be carried out"
    status: ClassVar[int] = 400

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extensions = extensions


class NotFound(DomainError):
    code = "not-found"
    title = "Not found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    title = "The request conflicts with the current state"
    status = 409


class DuplicateCode(Conflict):
    code = "duplicate-code"
    title = "This code is already in use"


class AuthenticationRequired(DomainError):
    code = "authentication-required"
    title = "Valid credentials are required"
    status = 401


class PermissionDenied(DomainError):
    code = "forbidden"
    title = "You may not do this"
    status = 403


class InvalidValue(DomainError):
    """A well-formed request whose values break a business rule."""

    code = "invalid-value"
    title = "A value breaks a business rule"
    status = 422
