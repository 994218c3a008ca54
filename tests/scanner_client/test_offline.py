"""Offline door decisions: the same reasons the server would give, from synced data alone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest

from scanner_client import offline
from scanner_client.client import Result
from scanner_client.codes import Revocation
from scanner_client.queue import SyncedState
from tests.scanner_client.helpers import PUBLIC_B64, card_number, qr

NOW = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # 15:00 in Amsterdam
STATE = SyncedState(
    generation=1,
    programme="MK",
    timezone="Europe/Amsterdam",
    anti_passback_minutes=15,
    products={"ANNUAL": "Annual card"},
    keys={"ignored-id": PUBLIC_B64.decode()},
)
RULES = offline.Rules.from_state(STATE)
NUMBER = card_number(1)


def decide(
    text: str,
    *,
    admitted_at: Sequence[datetime] = (),
    revocations: dict[str, Revocation] | None = None,
    rules: offline.Rules | None = RULES,
    at: datetime = NOW,
) -> tuple[Result, str]:
    decision = offline.decide(
        text,
        client_scan_id="scan-1",
        scanned_at=at,
        rules=rules,
        revocations=revocations or {},
        admissions=lambda number, since: [m for m in admitted_at if m >= since],
    )
    assert decision.offline
    return decision.result, decision.reason


class TestCodes:
    def test_a_genuine_current_code_is_admitted_and_counted(self) -> None:
        decision = offline.decide(
            qr(NUMBER),
            client_scan_id="scan-1",
            scanned_at=NOW,
            rules=RULES,
            revocations={},
            admissions=lambda number, since: [],
        )
        assert (decision.result, decision.reason, decision.counted) == (Result.ADMITTED, "ok", True)
        assert decision.card_number == NUMBER
        assert decision.holder is not None
        assert decision.holder.product == "Annual card"

    def test_the_key_id_is_derived_not_trusted(self) -> None:
        assert RULES is not None
        assert list(RULES.keys) == ["56475aa7"]

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            (qr(NUMBER, valid_until=date(2026, 11, 24)), "expired"),
            (qr(NUMBER, product="CLUB"), "not_accepted_here"),
            (qr(NUMBER, programme="NL"), "invalid_code"),
            (qr(NUMBER)[:-10], "invalid_code"),
            ("not a code at all", "invalid_code"),
        ],
    )
    def test_refusals(self, text: str, reason: str) -> None:
        assert decide(text) == (Result.REFUSED, reason)

    def test_valid_until_is_the_last_day_in_the_institutions_time_zone(self) -> None:
        # 23:30 UTC on the 24th is already the 25th in Amsterdam.
        late = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
        assert decide(qr(NUMBER, valid_until=date(2026, 11, 24)), at=late)[1] == "expired"

    @pytest.mark.parametrize(
        ("entry", "reason"),
        [
            (Revocation(1, True, "blocked"), "blocked"),
            (Revocation(1, True, "lost"), "replaced"),
            (Revocation(2, False, "reissued"), "replaced"),
            (Revocation(1, False, "unblocked"), "ok"),
        ],
    )
    def test_revocation_list(self, entry: Revocation, reason: str) -> None:
        assert decide(qr(NUMBER), revocations={NUMBER: entry})[1] == reason

    def test_never_synced_refuses_every_code(self) -> None:
        assert decide(qr(NUMBER), rules=None) == (Result.REFUSED, "not_synced")
        assert offline.Rules.from_state(SyncedState(generation=0)) is None


class TestTypedNumbers:
    def test_a_valid_typed_number_needs_the_network(self) -> None:
        assert decide(" ".join([NUMBER[:4], NUMBER[4:8], NUMBER[8:]])) == (
            Result.REFUSED,
            "needs_network",
        )

    def test_a_mistyped_number_is_invalid(self) -> None:
        wrong = NUMBER[:-1] + str((int(NUMBER[-1]) + 1) % 10)
        assert decide(wrong)[1] == "invalid_code"

    def test_a_blocked_typed_number_says_blocked(self) -> None:
        assert decide(NUMBER, revocations={NUMBER: Revocation(1, True, "blocked")})[1] == "blocked"


class TestAntiPassback:
    def test_within_the_window_is_already_used(self) -> None:
        assert decide(qr(NUMBER), admitted_at=[NOW - timedelta(minutes=14)]) == (
            Result.REFUSED,
            "already_used",
        )

    def test_a_scan_reported_before_an_admission_is_also_within_the_window(self) -> None:
        assert decide(qr(NUMBER), admitted_at=[NOW + timedelta(minutes=5)])[1] == "already_used"

    def test_later_the_same_day_is_a_reentry_not_counted(self) -> None:
        decision = offline.decide(
            qr(NUMBER),
            client_scan_id="scan-2",
            scanned_at=NOW,
            rules=RULES,
            revocations={},
            admissions=lambda number, since: [NOW - timedelta(hours=2)],
        )
        assert (decision.result, decision.counted, decision.visits_today) == (
            Result.REENTRY,
            False,
            2,
        )

    def test_yesterday_does_not_make_a_reentry(self) -> None:
        # 22:30 UTC on the 24th was 23:30 in Amsterdam: the day before, in local time.
        assert decide(qr(NUMBER), admitted_at=[datetime(2026, 11, 24, 22, 30, tzinfo=UTC)]) == (
            Result.ADMITTED,
            "ok",
        )
