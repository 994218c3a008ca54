"""Card numbers: random, fixed length, with a Luhn check digit so typos fail before any lookup."""

from __future__ import annotations

import re
import secrets

from membership.errors import InvalidValue

LENGTH = 12
_SEPARATORS = re.compile(r"[\s\-]+")


class InvalidCardNumber(InvalidValue):
    code = "invalid-card-number"
    title = "This is not a valid card number"


def luhn_digit(payload: str) -> str:
    """The digit that makes `payload + digit` pass the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def generate() -> str:
    """A CSPRNG number, never sequential, so numbers cannot be guessed from one another.

    The first digit is never 0, so a number keeps its length when handled as an integer.
    """
    body = str(secrets.randbelow(9) + 1) + "".join(
        str(secrets.randbelow(10)) for _ in range(LENGTH - 2)
    )
    return body + luhn_digit(body)


def is_valid(number: str) -> bool:
    return (
        len(number) == LENGTH
        and number.isascii()
        and number.isdigit()
        and number[0] != "0"
        and luhn_digit(number[:-1]) == number[-1]
    )


def normalise(raw: str) -> str:
    """Accept what people type or print ("1234 5678-9012"); refuse anything not a card number."""
    number = _SEPARATORS.sub("", raw)
    if not is_valid(number):
        raise InvalidCardNumber("Check the digits: this card number is mistyped or incomplete.")
    return number


def display(number: str) -> str:
    """Groups of four, as printed on the card."""
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
