"""The doorman's screen says the answer in words as well as colour, and rings on a refusal."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime

import pytest
from rich.console import Console

from membership import door
from scanner_client.client import Decision, Holder, Result
from scanner_client.display import REASONS, WORDS, Screen, banner

AT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


def decision(result: Result, reason: str, *, offline: bool = False) -> Decision:
    return Decision(
        client_scan_id="scan-1",
        result=result,
        reason=reason,
        counted=result is Result.ADMITTED,
        offline=offline,
        scanned_at=AT,
        visits_today=1,
        holder=Holder(
            name="Anna de Vries",
            product="Annual card",
            valid_until=date(2027, 1, 1),
            card_number="4123 4567 8905",
        ),
    )


def screen(width: int = 100) -> tuple[Screen, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system="truecolor")
    return Screen(console, errors=Console(file=io.StringIO())), out


class TestScreen:
    @pytest.mark.parametrize(
        ("result", "reason"),
        [(Result.ADMITTED, "ok"), (Result.REENTRY, "reentry"), (Result.REFUSED, "already_used")],
    )
    def test_the_answer_is_in_words_and_block_letters(self, result: Result, reason: str) -> None:
        shown, out = screen()
        shown.show(decision(result, reason), counts={"admitted": 3, "refused": 1})
        text = out.getvalue()
        assert WORDS[result] in text
        assert banner(WORDS[result]).splitlines()[0] in text
        assert REASONS[reason] in text
        assert "Anna de Vries" in text

    def test_colours_differ_per_answer(self) -> None:
        outputs = set()
        for result in Result:
            shown, out = screen()
            shown.show(decision(result, "ok"))
            outputs.add(out.getvalue().split("█")[0])
        assert len(outputs) == 3

    def test_only_a_refusal_rings_the_bell(self) -> None:
        rings = []
        for result in Result:
            shown, out = screen()
            shown.show(decision(result, "ok"))
            rings.append("\a" in out.getvalue())
        assert rings == [False, False, True]

    def test_an_offline_decision_is_marked(self) -> None:
        shown, out = screen()
        shown.show(decision(Result.ADMITTED, "ok", offline=True))
        assert "OFFLINE" in out.getvalue()

    def test_a_narrow_terminal_gets_the_plain_word(self) -> None:
        shown, out = screen(width=30)
        shown.show(decision(Result.REENTRY, "reentry"))
        assert "RE-ENTRY" in out.getvalue()
        assert "█" not in out.getvalue()

    def test_every_reason_the_server_or_client_gives_has_words(self) -> None:
        server_reasons = {reason.value for reason in door.Reason}
        assert server_reasons | {"not_synced", "needs_network"} <= set(REASONS)


class TestJson:
    def test_one_line_per_decision(self) -> None:
        out = io.StringIO()
        shown = Screen(Console(file=out), as_json=True, errors=Console(file=io.StringIO()))
        shown.show(decision(Result.REFUSED, "blocked", offline=True))
        shown.show(decision(Result.ADMITTED, "ok"))
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [(d["result"], d["reason"], d["offline"]) for d in lines] == [
            ("refused", "blocked", True),
            ("admitted", "ok", False),
        ]
