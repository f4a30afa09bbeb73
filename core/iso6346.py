"""ISO 6346 container numbers: owner code, category, serial number and check digit.

A container number is four capital letters (three of the owner, one of the
equipment category: ``U`` freight container, ``J`` detachable equipment, ``Z``
trailer or chassis, ``R`` reefer in some registers), six digits of serial number and
one check digit: ``MSKU1234565``.  The check digit (ISO 6346:1995, annex A) is the
sum of each of the first ten characters' values times 2 to the power of its
position (0 to 9), modulo 11, modulo 10 (a remainder of 10 is written 0).  Digits
count as themselves; letters from A = 10 upwards, skipping 11, 22, 33 (the
multiples of 11).
"""

from __future__ import annotations

import re

__all__ = ["PATTERN", "check_digit", "is_valid"]

#: The form of a container number, check digit not checked (also as JSON Schema pattern).
PATTERN = r"^[A-Z]{3}[UJZR][0-9]{7}$"
_FORM = re.compile(PATTERN)


def _letter_values() -> dict[str, int]:
    values, v = {}, 10
    for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        if v % 11 == 0:
            v += 1
        values[ch] = v
        v += 1
    return values


_VALUES = _letter_values()


def check_digit(first_ten: str) -> int:
    """The check digit (0 to 9) of the owner code, category and serial ``first_ten``.

    Raises:
        ValueError: ``first_ten`` is not four capital letters and six digits.
    """
    if not re.fullmatch(r"[A-Z]{4}[0-9]{6}", first_ten):
        raise ValueError(f"{first_ten!r} is not four capital letters and six digits")
    total = sum((_VALUES[ch] if ch.isalpha() else int(ch)) << i for i, ch in enumerate(first_ten))
    return total % 11 % 10


def is_valid(number: str) -> bool:
    """Whether ``number`` is a container number (:data:`PATTERN`) whose check digit
    is right."""
    return bool(_FORM.match(number)) and check_digit(number[:10]) == int(number[10])
