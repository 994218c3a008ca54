"""E-mail templates: every one renders in English and Dutch from the context its writer gives."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import UndefinedError

from membership import mail

CONTEXT: dict[str, Any] = {
    "first_name": "Sanne",
    "product": "Museum Card",
    "starts_on": "2026-11-25",
    "ends_on": "2027-11-25",
    "card_id": "00000000-0000-0000-0000-000000000001",
    "card_number": "4123456789012",
    "reference": "MK-ABCDEFGHJK",
    "amount": {"amount_minor": 7500, "currency": "EUR"},
    "vat": {"amount_minor": 619, "currency": "EUR"},
    "vat_rate_bp": 900,
    "paid_on": "2026-11-25",
    "grace_days": 14,
    "days": 30,
    "link": "http://testserver/members/sign-in?token=abc",
}


@pytest.mark.parametrize("template", mail.TEMPLATES)
def test_renders_in_both_languages_with_different_text(template: str) -> None:
    english = mail.render(template, language="en", context=CONTEXT)
    dutch = mail.render(template, language="nl", context=CONTEXT)
    assert all(english)
    assert all(dutch)
    assert english[0] != dutch[0]
    assert english[1] != dutch[1]


def test_receipt_figures_show_amount_vat_and_the_last_day() -> None:
    _subject, body = mail.render("welcome", language="en", context=CONTEXT)
    assert "EUR 75,00" in body
    assert "EUR 6,19" in body
    assert "9%" in body
    assert "24-11-2027" in body


def test_unknown_language_falls_back_to_english() -> None:
    assert mail.render("reminder", language="de", context=CONTEXT) == mail.render(
        "reminder", language="en", context=CONTEXT
    )


def test_a_missing_field_fails_instead_of_mailing_a_blank() -> None:
    with pytest.raises(UndefinedError):
        mail.render("reminder", language="en", context={"first_name": "Sanne"})
