"""Participating institutions, their entrances (venues) and their visit tariffs over time."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from membership import audit
from membership.audit import Actor
from membership.clock import local_date, utcnow
from membership.errors import Conflict, DuplicateCode, InvalidValue, NotFound, PermissionDenied
from membership.models import Institution, InstitutionTariff, Venue
from membership.pagination import (
    PageResult,
    audit_value,
    changed_fields,
    flush_unique,
    like_pattern,
    paginate,
)
from membership.staff import Principal

# Codes and contract dates are the operator's: they appear on payout statements and exports.
OPERATOR_ONLY_FIELDS = frozenset({"code", "joined_on", "left_on"})


class DuplicateTariffPeriod(Conflict):
    code = "duplicate-tariff-period"
    title = "A tariff period starting on this date exists"


def current_tariff(institution: Institution, *, on: date) -> InstitutionTariff | None:
    """The tariff in force on `on`: the latest period that has started (tariffs loaded)."""
    started = [tariff for tariff in institution.tariffs if tariff.valid_from <= on]
    return max(started, key=lambda tariff: tariff.valid_from, default=None)


def local_today(institution: Institution) -> date:
    """Today where the institution is: a tariff changes at its midnight, not at UTC's."""
    return local_date(utcnow(), institution.timezone)


async def _load(session: AsyncSession, institution_id: uuid.UUID) -> Institution:
    institution = await session.scalar(
        select(Institution)
        .where(Institution.id == institution_id)
        .options(selectinload(Institution.tariffs))
        .execution_options(populate_existing=True)
    )
    if institution is None:
        raise NotFound("No such institution.")
    return institution


async def _ensure_code_free(session: AsyncSession, code: str) -> None:
    if await session.scalar(select(Institution.id).where(Institution.code == code)) is not None:
        raise DuplicateCode(f"Institution code {code} is taken.", field="code")


async def create_institution(
    session: AsyncSession,
    *,
    code: str,
    name: str,
    city: str,
    timezone: str,
    joined_on: date,
    visit_tariff_minor: int,
    admission_price_minor: int,
    currency: str,
    anti_passback_minutes: int = 15,
    actor: Actor,
) -> Institution:
    """An institution joins with its first tariff period, so every counted visit has a price."""
    await _ensure_code_free(session, code)
    tariff = InstitutionTariff(
        valid_from=joined_on,
        visit_tariff_minor=visit_tariff_minor,
        admission_price_minor=admission_price_minor,
        currency=currency,
    )
    institution = Institution(
        code=code,
        name=name,
        city=city,
        timezone=timezone,
        anti_passback_minutes=anti_passback_minutes,
        joined_on=joined_on,
        active=True,
        tariffs=[tariff],
    )
    session.add(institution)
    await flush_unique(session, conflict=DuplicateCode(f"Institution code {code} is taken."))
    await audit.record(
        session,
        actor=actor,
        action="institution.create",
        entity_type="institution",
        entity_id=institution.id,
        institution_id=institution.id,
        changes={
            "code": code,
            "name": name,
            "city": city,
            "timezone": timezone,
            "anti_passback_minutes": anti_passback_minutes,
            "joined_on": audit_value(joined_on),
            "visit_tariff_minor": visit_tariff_minor,
            "admission_price_minor": admission_price_minor,
            "currency": currency,
        },
    )
    return institution


async def get_institution(
    session: AsyncSession, *, institution_id: uuid.UUID, principal: Principal
) -> Institution:
    principal.ensure_institution(institution_id)
    return await _load(session, institution_id)


async def list_institutions(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    offset: int,
    active: bool | None = None,
    city: str | None = None,
    q: str | None = None,
) -> PageResult[Institution]:
    """Institution staff see their own institution only (rule 5); the operator sees all."""
    statement: Select[Institution] = (
        select(Institution)
        .options(selectinload(Institution.tariffs))
        .order_by(Institution.name, Institution.id)
    )
    if not principal.is_operator:
        statement = statement.where(Institution.id == principal.institution_id)
    if active is not None:
        statement = statement.where(Institution.active == active)
    if city:
        statement = statement.where(func.lower(Institution.city) == city.strip().lower())
    if q:
        statement = statement.where(func.lower(Institution.name).like(like_pattern(q), escape="\\"))
    return await paginate(session, statement, limit=limit, offset=offset)


async def update_institution(
    session: AsyncSession,
    *,
    institution_id: uuid.UUID,
    principal: Principal,
    values: dict[str, Any],
) -> Institution:
    """A manager may edit their institution's details, but codes and contract dates stay
    with the operator."""
    if not principal.is_operator and OPERATOR_ONLY_FIELDS & values.keys():
        fields = ", ".join(sorted(OPERATOR_ONLY_FIELDS & values.keys()))
        raise PermissionDenied(f"Only the operator may change {fields}.")
    institution = await get_institution(session, institution_id=institution_id, principal=principal)
    joined_on = values.get("joined_on", institution.joined_on)
    left_on = values.get("left_on", institution.left_on)
    if left_on is not None and left_on < joined_on:
        raise InvalidValue("left_on cannot be before joined_on.", field="left_on")
    code = values.get("code", institution.code)
    if code != institution.code:
        await _ensure_code_free(session, code)
    changes = changed_fields(institution, values)
    if not changes:
        return institution
    await flush_unique(session, conflict=DuplicateCode(f"Institution code {code} is taken."))
    await audit.record(
        session,
        actor=principal.actor,
        action="institution.update",
        entity_type="institution",
        entity_id=institution.id,
        institution_id=institution.id,
        changes=changes,
    )
    return institution


async def deactivate_institution(
    session: AsyncSession, *, institution_id: uuid.UUID, actor: Actor
) -> Institution:
    """Deactivated, not deleted: past visits and payouts must keep their institution."""
    institution = await _load(session, institution_id)
    if institution.active:
        institution.active = False
        await session.flush()
        await audit.record(
            session,
            actor=actor,
            action="institution.deactivate",
            entity_type="institution",
            entity_id=institution.id,
            institution_id=institution.id,
            changes={"active": [True, False]},
        )
    return institution


async def add_tariff(
    session: AsyncSession,
    *,
    institution_id: uuid.UUID,
    valid_from: date,
    visit_tariff_minor: int,
    admission_price_minor: int,
    currency: str,
    actor: Actor,
) -> Institution:
    """Start a new tariff period; earlier periods stay so old statements still recompute."""
    institution = await _load(session, institution_id)
    if valid_from < institution.joined_on:
        raise InvalidValue("A tariff cannot start before the institution joined.")
    conflict = DuplicateTariffPeriod(f"A tariff period starts on {valid_from} already.")
    if any(tariff.valid_from == valid_from for tariff in institution.tariffs):
        raise conflict
    tariff = InstitutionTariff(
        institution_id=institution.id,
        valid_from=valid_from,
        visit_tariff_minor=visit_tariff_minor,
        admission_price_minor=admission_price_minor,
        currency=currency,
    )
    session.add(tariff)
    await flush_unique(session, conflict=conflict)
    await audit.record(
        session,
        actor=actor,
        action="institution.add_tariff",
        entity_type="institution_tariff",
        entity_id=tariff.id,
        institution_id=institution.id,
        changes={
            "valid_from": audit_value(valid_from),
            "visit_tariff_minor": visit_tariff_minor,
            "admission_price_minor": admission_price_minor,
            "currency": currency,
        },
    )
    return await _load(session, institution_id)


async def _ensure_venue_code_free(
    session: AsyncSession, *, institution_id: uuid.UUID, code: str
) -> None:
    taken = await session.scalar(
        select(Venue.id).where(Venue.institution_id == institution_id, Venue.code == code)
    )
    if taken is not None:
        raise DuplicateCode(f"Venue code {code} is taken in this institution.", field="code")


async def create_venue(
    session: AsyncSession,
    *,
    institution_id: uuid.UUID,
    code: str,
    name: str,
    address: str | None,
    actor: Actor,
) -> Venue:
    await _load(session, institution_id)
    await _ensure_venue_code_free(session, institution_id=institution_id, code=code)
    venue = Venue(institution_id=institution_id, code=code, name=name, address=address, active=True)
    session.add(venue)
    await flush_unique(session, conflict=DuplicateCode(f"Venue code {code} is taken."))
    await audit.record(
        session,
        actor=actor,
        action="venue.create",
        entity_type="venue",
        entity_id=venue.id,
        institution_id=institution_id,
        changes={"code": code, "name": name, "address": address},
    )
    return venue


async def get_venue(
    session: AsyncSession, *, institution_id: uuid.UUID, venue_id: uuid.UUID
) -> Venue:
    """A venue is reached through its institution; under another one it does not exist."""
    venue = await session.get(Venue, venue_id)
    if venue is None or venue.institution_id != institution_id:
        raise NotFound("No such venue in this institution.")
    return venue


async def list_venues(
    session: AsyncSession,
    *,
    institution_id: uuid.UUID,
    limit: int,
    offset: int,
    active: bool | None = None,
    q: str | None = None,
) -> PageResult[Venue]:
    await _load(session, institution_id)
    statement: Select[Venue] = (
        select(Venue).where(Venue.institution_id == institution_id).order_by(Venue.code, Venue.id)
    )
    if active is not None:
        statement = statement.where(Venue.active == active)
    if q:
        statement = statement.where(func.lower(Venue.name).like(like_pattern(q), escape="\\"))
    return await paginate(session, statement, limit=limit, offset=offset)


async def update_venue(
    session: AsyncSession,
    *,
    institution_id: uuid.UUID,
    venue_id: uuid.UUID,
    values: dict[str, Any],
    actor: Actor,
) -> Venue:
    venue = await get_venue(session, institution_id=institution_id, venue_id=venue_id)
    code = values.get("code", venue.code)
    if code != venue.code:
        await _ensure_venue_code_free(session, institution_id=institution_id, code=code)
    changes = changed_fields(venue, values)
    if not changes:
        return venue
    await flush_unique(session, conflict=DuplicateCode(f"Venue code {code} is taken."))
    await audit.record(
        session,
        actor=actor,
        action="venue.update",
        entity_type="venue",
        entity_id=venue.id,
        institution_id=institution_id,
        changes=changes,
    )
    return venue


async def deactivate_venue(
    session: AsyncSession, *, institution_id: uuid.UUID, venue_id: uuid.UUID, actor: Actor
) -> Venue:
    """Kept, not deleted: its check-ins still name it."""
    venue = await get_venue(session, institution_id=institution_id, venue_id=venue_id)
    if venue.active:
        venue.active = False
        await session.flush()
        await audit.record(
            session,
            actor=actor,
            action="venue.deactivate",
            entity_type="venue",
            entity_id=venue.id,
            institution_id=institution_id,
            changes={"active": [True, False]},
        )
    return venue
