"""The rows, table by table, as binary COPY fields computed chunk by chunk from the arrays.

Chunking keeps memory flat: no table's rows exist as a whole, only the generator's columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from membership.demographics import AGE_BANDS, REGION_PREFIX_LENGTH
from membership.national.arrays import _day_number
from membership.national.copy import (
    _bool,
    _bytes,
    _date,
    _Field,
    _int2,
    _int4,
    _int8,
    _labels,
    _nullable,
    _Table,
    _text,
    _timestamp,
)
from membership.national.shape import (
    _ADMIT,
    _ENTRANCES,
    _MEMBERSHIP_STATUSES,
    _OUTCOMES,
    _RESULTS,
    CITIES,
    CURRENCY,
    GRACE_DAYS,
    TIMEZONE,
    VAT_BP,
    NationalSummary,
)
from membership.national.visits import Generator


@dataclass
class Programme:
    """The generated rows as COPY-ready tables, and what they hold."""

    tables: list[_Table]
    summary: NationalSummary


# --- the rows, table by table ---------------------------------------------------------------


def _constant(value: bytes, n: int) -> _Field:
    return _Field(np.broadcast_to(np.frombuffer(value, np.uint8), (n, len(value))))


def _tables(g: Generator, *, checkins_built: bool = True) -> list[_Table]:
    """Each table's columns as COPY fields, computed chunk by chunk from the generator's arrays.

    Without `checkins_built`, the check-ins, their counters and the visitor rows are left out
    (the generator is still drawing them).
    """
    n_inst = g.size.institutions
    policy_days = np.array([_day_number(date(2015, 1, 1)), _day_number(g.pool_from)])
    tariff_change = _day_number((g.first_day + timedelta(days=100)).replace(day=1))
    n_terms = len(g.term_ids)
    n_members = len(g.m_ids)
    statuses = [status.value for status in _MEMBERSHIP_STATUSES]
    outcome_result = np.array([_RESULTS.index(result) for result, _ in _OUTCOMES])
    reasons = [reason.value for _, reason in _OUTCOMES]
    clubs = np.flatnonzero(g.product_club >= 0)

    def institutions(s: slice) -> list[_Field]:
        index = np.arange(n_inst)[s]
        n = len(index)
        return [
            _bytes(g.i_ids[s]),
            _text(np.array([g.i_codes[i].encode() for i in index])),
            _text(np.array([g.i_names[i].encode() for i in index])),
            _text(np.array([CITIES[g.i_city[i]][0].encode() for i in index])),
            _constant(TIMEZONE.encode(), n),
            _int4(np.full(n, 15)),
            _date(g.i_joined[s]),
            _bool(np.ones(n)),
        ]

    def tariffs(s: slice) -> list[_Field]:
        row = np.arange(2 * n_inst)[s]
        institution, later = row // 2, row % 2 == 1
        return [
            _bytes(g.tariff_ids[s]),
            _bytes(g.i_ids[institution]),
            _date(np.where(later, tariff_change, g.i_joined[institution])),
            _int4(g.i_tariff[institution] + np.where(later, g.i_raise[institution], 0)),
            _int4(g.i_admission[institution] + np.where(later, 100, 0)),
            _constant(CURRENCY.encode(), len(row)),
        ]

    def venues(s: slice) -> list[_Field]:
        slot = g.venue_slot[s]
        return [
            _bytes(g.venue_ids[s]),
            _bytes(g.i_ids[g.venue_institution[s]]),
            _labels(slot, [code for code, _ in _ENTRANCES]),
            _labels(slot, [name for _, name in _ENTRANCES]),
            _bool(np.ones(len(slot))),
        ]

    def devices(s: slice) -> list[_Field]:
        slot = g.venue_slot[s]
        return [
            _bytes(g.device_ids[s]),
            _bytes(g.venue_ids[s]),
            _labels(slot, [f"Scanner {name.lower()}" for _, name in _ENTRANCES]),
        ]

    def products(s: slice) -> list[_Field]:
        index = np.arange(len(g.product_codes))[s]
        n = len(index)
        ages = np.array([g.product_ages[i] for i in index], dtype=float)
        holders = g.product_holders[s]
        club = g.product_club[s] >= 0
        return [
            _bytes(g.product_ids[s]),
            _text(np.array([g.product_codes[i].encode() for i in index])),
            _text(np.array([g.product_names[i].encode() for i in index])),
            _text(np.array([g.product_kinds[i].encode() for i in index])),
            _int4(g.product_prices[s]),
            _constant(CURRENCY.encode(), n),
            _int4(np.full(n, VAT_BP)),
            _int4(np.full(n, 12)),
            _nullable(_int4(np.nan_to_num(ages[:, 0])), np.isnan(ages[:, 0])),
            _nullable(_int4(np.nan_to_num(ages[:, 1])), np.isnan(ages[:, 1])),
            _int4(holders),
            _int4(holders),
            _bool(np.ones(n)),
            _int4(np.full(n, GRACE_DAYS)),
            _bool(~club),
            _bool(np.ones(n)),
        ]

    def product_institutions(s: slice) -> list[_Field]:
        return [_bytes(g.product_ids[clubs[s]]), _bytes(g.i_ids[g.product_club[clubs[s]]])]

    def policies(s: slice) -> list[_Field]:
        pool = np.arange(2)[s] == 1
        return [
            _bytes(g.policy_ids[s]),
            _date(policy_days[s]),
            _labels(pool.astype(int), ["tariff", "pool"]),
            _int4(np.where(pool, 7000, 0)),
            _int4(np.where(pool, 4000, 0)),
        ]

    def members(s: slice) -> list[_Field]:
        n = len(g.m_ids[s])
        marketing, share = g.m_marketing[s], g.m_share[s]
        return [
            _bytes(g.m_ids[s]),
            _text(g.m_first[s]),
            _text(g.m_last[s]),
            _text(g.m_email[s]),
            _nullable(_date(g.m_birth[s]), g.m_birth_unknown[s]),
            _text(g.m_postal[s]),
            _labels(g.m_language[s], ["nl", "en"]),
            _bytes(g.m_visitor_key[s]),
            _bool(marketing),
            _nullable(_timestamp(g.m_consent_at[s]), ~marketing),
            _bool(share),
            _nullable(_timestamp(g.m_consent_at[s]), ~share),
            _bool(np.zeros(n)),
            _timestamp(g.m_created[s]),
            _timestamp(g.m_created[s]),
        ]

    def memberships(s: slice) -> list[_Field]:
        return [
            _bytes(g.ms_ids[s]),
            _bytes(g.product_ids[g.ms_product[s]]),
            _labels(g.ms_status[s], statuses),
            _bool(g.ms_auto_renew[s]),
            _nullable(_date(g.ms_paid_until[s]), g.ms_unpaid[s]),
            _timestamp(g.ms_paid_at[s]),
            _timestamp(g.ms_paid_at[s]),
        ]

    def holders(s: slice) -> list[_Field]:
        return [_bytes(g.ms_ids[g.m_membership[s]]), _bytes(g.m_ids[s])]

    def terms(s: slice) -> list[_Field]:
        return [
            _bytes(g.term_ids[s]),
            _bytes(g.ms_ids[g.t_membership[s]]),
            _date(g.t_starts[s]),
            _date(g.t_ends[s]),
            _labels((g.t_number[s] > 0).astype(int), ["purchase", "renewal"]),
            _labels(g.t_refunded[s].astype(int), ["active", "refunded"]),
            _bytes(g.payment_ids[s]),
            _timestamp(g.p_paid_at[s]),
        ]

    def payments(s: slice) -> list[_Field]:
        row = np.arange(len(g.payment_ids))[s]
        refund = row >= n_terms
        term = np.where(refund, 0, row)
        kind = np.where(refund, 2, np.where(g.t_number[term] > 0, 1, 0))
        refunded_term = ~refund & g.t_refunded[term]
        refund_of = g.p_refund_of[np.maximum(row - n_terms, 0)]
        n = len(row)
        return [
            _bytes(g.payment_ids[s]),
            _bytes(g.p_references[s]),
            _bytes(g.ms_ids[g.p_membership[s]]),
            _labels(kind, ["purchase", "renewal", "refund"]),
            _labels(refunded_term.astype(int), ["succeeded", "refunded"]),
            _constant(b"local", n),
            _int4(g.p_amount[s]),
            _int4(np.where(refunded_term, g.p_amount[s], 0)),
            _constant(CURRENCY.encode(), n),
            _int4(np.full(n, VAT_BP)),
            _timestamp(g.p_paid_at[s]),
            _nullable(_bytes(g.payment_ids[refund_of]), ~refund),
            _labels(np.where(refund, 0, -1), ["withdrawn within 14 days"]),
            _timestamp(g.p_paid_at[s]),
            _timestamp(g.p_paid_at[s]),
        ]

    def cards(s: slice) -> list[_Field]:
        member = g.card_member[s]
        status = g.card_status[s]
        changed = g.card_changed[s]
        replaced_by = g.card_replaced_by[s]
        reason = np.select([status == "replaced", status == "blocked"], [0, 1], -1)
        n = len(member)
        return [
            _bytes(g.card_ids[s]),
            _text(g.card_numbers[s]),
            _int4(np.ones(n)),
            _text(status.astype(np.bytes_)),
            _bytes(g.m_ids[member]),
            _bytes(g.ms_ids[g.m_membership[member]]),
            _timestamp(g.card_issued[s]),
            _labels(reason, ["lost", "membership refunded"]),
            _nullable(_timestamp(changed), changed < 0),
            _nullable(_bytes(g.card_ids[np.maximum(replaced_by, 0)]), replaced_by < 0),
            _bool(np.zeros(n)),
            _timestamp(g.card_issued[s]),
            _timestamp(np.where(changed < 0, g.card_issued[s], changed)),
        ]

    def checkins(s: slice) -> list[_Field]:
        member = g.c_member[s]
        outcome = g.c_outcome[s]
        n = len(member)
        start = s.start or 0
        details = g.scan_details(s)
        return [
            _int8(np.arange(start + 1, start + n + 1)),
            _bytes(details.scan_id),
            _bytes(g.device_ids[details.venue]),
            _bytes(g.i_ids[g.c_institution[s]]),
            _bytes(g.venue_ids[details.venue]),
            _bytes(g.card_ids[details.card]),
            _int4(np.ones(n)),
            _bytes(g.m_ids[member]),
            _bytes(g.m_visitor_key[member]),
            _bytes(g.product_ids[g.m_product[member]]),
            _timestamp(g.c_scanned[s]),
            _timestamp(details.received),
            _date(g.c_day[s]),
            _labels(outcome_result[outcome], [result.value for result in _RESULTS]),
            _labels(outcome, reasons),
            _bool(outcome == _ADMIT),
            _bool(details.offline),
            _bool(np.zeros(n)),
            _bool(np.zeros(n)),
            _labels(details.age_band, [label for _, label in AGE_BANDS]),
            _bytes(g.m_postal[member].view(np.uint8).reshape(n, -1)[:, :REGION_PREFIX_LENGTH]),
        ]

    def day_counts(s: slice) -> list[_Field]:
        outcome = g.k_outcome[s]
        return [
            _bytes(g.i_ids[g.k_institution[s]]),
            _date(g.k_day[s]),
            _int2(g.k_hour[s]),
            _bytes(g.product_ids[g.k_product[s]]),
            _labels(outcome_result[outcome], [result.value for result in _RESULTS]),
            _labels(outcome, reasons),
            _bool(outcome == _ADMIT),
            _int4(g.k_checkins[s]),
        ]

    def visitors(s: slice) -> list[_Field]:
        latest = g.v_latest[s]
        return [
            _bytes(g.i_ids[g.v_institution[s]]),
            _bytes(g.m_visitor_key[g.v_member[s]]),
            _date(g.v_first[s]),
            *(_nullable(_date(latest[:, k]), latest[:, k] < 0) for k in range(4)),
            _bytes(g.m_ids[g.v_member[s]]),
            _date(latest[:, 0]),
        ]

    def table(
        name: str, columns: str, rows: int, fields: Callable[[slice], list[_Field]]
    ) -> _Table:
        return _Table(name, tuple(columns.split()), rows, fields)

    tables = [
        table(
            "institutions",
            "id code name city timezone anti_passback_minutes joined_on active",
            n_inst,
            institutions,
        ),
        table(
            "institution_tariffs",
            "id institution_id valid_from visit_tariff_minor admission_price_minor currency",
            2 * n_inst,
            tariffs,
        ),
        table("venues", "id institution_id code name active", len(g.venue_ids), venues),
        table("devices", "id venue_id name", len(g.device_ids), devices),
        table(
            "products",
            "id code name kind price_minor currency vat_rate_bp validity_months min_age max_age "
            "min_holders max_holders auto_renew_allowed grace_days accepted_everywhere active",
            len(g.product_codes),
            products,
        ),
        table(
            "product_institutions", "product_id institution_id", len(clubs), product_institutions
        ),
        table("clearing_policies", "id valid_from model payout_share_bp floor_bp", 2, policies),
        table(
            "members",
            "id first_name last_name email birth_date postal_code language visitor_key "
            "marketing_opt_in marketing_opt_in_at share_contact share_contact_at imported "
            "created_at updated_at",
            n_members,
            members,
        ),
        table(
            "memberships",
            "id product_id status auto_renew paid_until created_at updated_at",
            len(g.ms_ids),
            memberships,
        ),
        table("membership_holders", "membership_id member_id", n_members, holders),
        table(
            "payments",
            "id reference membership_id kind status provider amount_minor refunded_minor currency "
            "vat_rate_bp paid_at refund_of_id refund_reason created_at updated_at",
            len(g.payment_ids),
            payments,
        ),
        table(
            "membership_terms",
            "id membership_id starts_on ends_on kind status payment_id created_at",
            n_terms,
            terms,
        ),
        table(
            "cards",
            "id number version status member_id membership_id issued_at status_reason "
            "status_changed_at replaced_by_id imported created_at updated_at",
            len(g.card_ids),
            cards,
        ),
    ]
    if checkins_built:
        tables.append(
            table(
                "checkins",
                "id client_scan_id device_id institution_id venue_id card_id card_version "
                "member_id visitor_key product_id scanned_at received_at local_date result "
                "reason counted offline flagged imported age_band region",
                len(g.c_member),
                checkins,
            )
        )
        tables.append(
            table(
                "institution_day_counts",
                "institution_id local_date hour product_id result reason counted checkins",
                len(g.k_checkins),
                day_counts,
            )
        )
        tables.append(
            table(
                "institution_visitors",
                "institution_id visitor_key first_visit visit_1 visit_2 visit_3 visit_4 "
                "member_id linked_on",
                len(g.v_member),
                visitors,
            )
        )
    return tables
