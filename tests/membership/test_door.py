"""Every door rule as a fast unit test of the pure decision."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from membership.door import Facts, Period, Reason, decide
from membership.models import CardStatus, CheckinResult, MembershipStatus

NOW = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)
TODAY = date(2026, 6, 10)

BASE = Facts(
    scanned_at=NOW,
    local_day=TODAY,
    card_status=CardStatus.ACTIVE,
    card_version=2,
    scanned_version=2,
    card_expires_at=None,
    visit_limit=None,
    visits_counted_on_card=0,
    membership_status=MembershipStatus.ACTIVE,
    periods=(Period(date(2026, 1, 1), date(2027, 1, 1)),),
    grace_days=14,
    accepted_here=True,
    anti_passback=timedelta(minutes=15),
    last_admitted_here_at=None,
    counted_here_today=False,
)


def test_first_scan_of_the_day_is_a_counted_visit() -> None:
    decision = decide(BASE)
    assert (decision.result, decision.reason, decision.counted) == (
        CheckinResult.ADMITTED,
        Reason.OK,
        True,
    )


class TestAntiPassback:
    def test_within_the_window_is_already_used(self) -> None:
        facts = replace(
            BASE, last_admitted_here_at=NOW - timedelta(minutes=14), counted_here_today=True
        )
        assert decide(facts).reason is Reason.ALREADY_USED

    def test_skewed_clock_within_the_window_is_already_used(self) -> None:
        facts = replace(
            BASE, last_admitted_here_at=NOW + timedelta(minutes=5), counted_here_today=True
        )
        assert decide(facts).reason is Reason.ALREADY_USED

    def test_after_the_window_the_same_day_is_an_uncounted_reentry(self) -> None:
        facts = replace(
            BASE, last_admitted_here_at=NOW - timedelta(minutes=15), counted_here_today=True
        )
        decision = decide(facts)
        assert (decision.result, decision.counted) == (CheckinResult.REENTRY, False)

    def test_window_of_zero_minutes_never_refuses(self) -> None:
        facts = replace(
            BASE,
            anti_passback=timedelta(0),
            last_admitted_here_at=NOW,
            counted_here_today=True,
        )
        assert decide(facts).result is CheckinResult.REENTRY


class TestCard:
    @pytest.mark.parametrize(
        ("status", "reason"),
        [
            (CardStatus.BLOCKED, Reason.BLOCKED),
            (CardStatus.REPLACED, Reason.REPLACED),
            (CardStatus.EXPIRED, Reason.EXPIRED),
        ],
    )
    def test_dead_cards_are_refused(self, status: CardStatus, reason: Reason) -> None:
        assert decide(replace(BASE, card_status=status)).reason is reason

    def test_an_old_version_after_reissue_is_replaced(self) -> None:
        assert decide(replace(BASE, scanned_version=1)).reason is Reason.REPLACED

    def test_a_typed_number_has_no_version_to_compare(self) -> None:
        assert decide(replace(BASE, scanned_version=None)).reason is Reason.OK


class TestTemporaryCard:
    TEMP = replace(
        BASE,
        card_status=CardStatus.TEMPORARY,
        card_expires_at=NOW + timedelta(days=3),
        visit_limit=5,
        visits_counted_on_card=4,
    )

    def test_the_fifth_visit_is_admitted(self) -> None:
        assert decide(self.TEMP).counted

    def test_the_sixth_visit_is_refused(self) -> None:
        facts = replace(self.TEMP, visits_counted_on_card=5)
        assert decide(facts).reason is Reason.TEMPORARY_LIMIT_REACHED

    def test_reentry_after_the_last_visit_is_still_allowed(self) -> None:
        facts = replace(
            self.TEMP,
            visits_counted_on_card=5,
            counted_here_today=True,
            last_admitted_here_at=NOW - timedelta(hours=2),
        )
        assert decide(facts).result is CheckinResult.REENTRY

    def test_after_31_days_it_has_expired(self) -> None:
        facts = replace(self.TEMP, card_expires_at=NOW)
        assert decide(facts).reason is Reason.EXPIRED


class TestValidity:
    def test_before_the_first_term(self) -> None:
        facts = replace(BASE, local_day=date(2025, 12, 31))
        assert decide(facts).reason is Reason.NOT_YET_VALID

    def test_the_last_day_of_the_term_is_valid_and_grace_follows(self) -> None:
        for day in (date(2026, 12, 31), date(2027, 1, 1), date(2027, 1, 14)):
            assert decide(replace(BASE, local_day=day)).admitted, day

    def test_after_the_grace_days_it_has_expired(self) -> None:
        assert decide(replace(BASE, local_day=date(2027, 1, 15))).reason is Reason.EXPIRED

    def test_a_renewal_term_continues_the_validity(self) -> None:
        periods = (*BASE.periods, Period(date(2027, 1, 1), date(2028, 1, 1)))
        facts = replace(BASE, periods=periods, local_day=date(2027, 6, 1))
        assert decide(facts).admitted

    def test_a_gap_between_terms_is_covered_only_by_grace(self) -> None:
        periods = (
            Period(date(2025, 1, 1), date(2026, 1, 1)),
            Period(date(2026, 3, 1), date(2027, 3, 1)),
        )
        assert decide(replace(BASE, periods=periods, local_day=date(2026, 1, 10))).admitted
        assert decide(replace(BASE, periods=periods, local_day=date(2026, 2, 1))).admitted is False

    @pytest.mark.parametrize(
        ("status", "reason"),
        [
            (MembershipStatus.PENDING_PAYMENT, Reason.MEMBERSHIP_INACTIVE),
            (MembershipStatus.CANCELLED, Reason.MEMBERSHIP_INACTIVE),
            (MembershipStatus.REFUNDED, Reason.MEMBERSHIP_INACTIVE),
            (MembershipStatus.EXPIRED, Reason.EXPIRED),
            (None, Reason.MEMBERSHIP_INACTIVE),
        ],
    )
    def test_inactive_memberships(self, status: MembershipStatus | None, reason: Reason) -> None:
        assert decide(replace(BASE, membership_status=status)).reason is reason

    def test_in_grace_is_still_admitted(self) -> None:
        assert decide(replace(BASE, membership_status=MembershipStatus.IN_GRACE)).admitted


def test_a_club_card_elsewhere_is_not_accepted_here() -> None:
    assert decide(replace(BASE, accepted_here=False)).reason is Reason.NOT_ACCEPTED_HERE
