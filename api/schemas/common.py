"""Building blocks of the API schemas: pages, list queries, partial updates, checked values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Generic, TypeVar
from zoneinfo import available_timezones

import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from membership.pagination import PageResult

T = TypeVar("T")
Row = TypeVar("Row")

# Codes appear on statements, exports and scanner screens: short, upper-case, unambiguous.
CODE_PATTERN = r"^[A-Z0-9][A-Z0-9_-]{1,31}$"
Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
MinorUnits = Annotated[int, Field(ge=0, le=10**11, description="Amount in minor units (cents).")]

_TIMEZONES = frozenset(available_timezones())


def _currency(value: str) -> str:
    if pycountry.currencies.get(alpha_3=value) is None:
        raise ValueError("not an ISO 4217 currency code")
    return value


def _timezone(value: str) -> str:
    if value not in _TIMEZONES:
        raise ValueError("not an IANA time zone name")
    return value


CurrencyCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    AfterValidator(_currency),
    Field(description="ISO 4217 code, upper case.", examples=["EUR"]),
]
TimeZoneName = Annotated[
    str, AfterValidator(_timezone), Field(description="IANA name.", examples=["Europe/Amsterdam"])
]


class RequestModel(BaseModel):
    """Every request body refuses unknown fields: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class PatchModel(RequestModel):
    """A partial update: only the fields sent change, and `null` only where a field may be empty.

    Fields are declared `X | None = None` so they can be left out; sending `null` for a
    required column would otherwise reach the database as a constraint error.
    """

    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable:
            raise ValueError("may not be null")
        return value

    def values(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class PageQuery(RequestModel):
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0)


class Page(BaseModel, Generic[T]):
    """One slice of a list; `total` counts every row that matches the filters."""

    items: list[T]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, result: PageResult[Row], convert: Callable[[Row], T]) -> Page[T]:
        return cls(
            items=[convert(row) for row in result.items],
            total=result.total,
            limit=result.limit,
            offset=result.offset,
        )
