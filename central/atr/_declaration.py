"""Strict parsing of a Goods Declaration (GD) and what its goods are expected to look like.

:func:`parse_gd` turns the GD object a scan carries (JSON: the scan-start
record's ``gd`` or ``nii atr analyze --gd``) into a typed, validated
:class:`GoodsDeclaration`: a misspelt field, a wrong type or an impossible
value is an :class:`~central.atr._model.AtrInputError` that names the field,
never a silently skipped check.  :func:`resolve` finds the declared goods in
the HS table (``_hs.py``): by HS code, else by the commodity text, else
unknown.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ._hs import HsExpectation, expectation, match_text, normalise_hs
from ._model import AtrInputError

__all__ = [
    "DeclaredGoods",
    "Found",
    "GoodsDeclaration",
    "parse_gd",
    "resolve",
]

#: Largest gross mass a GD may declare, kg: above any ISO container's rating
#: (ISO 668: 30 480 kg, 36 000 kg for some 45 ft) with margin for road chassis.
MAX_GROSS_KG = 60_000.0
#: Short forms of container types and their ISO 6346 size-type code.
_SHORT_TYPES = {
    "20GP": "22G1",
    "20DV": "22G1",
    "20DC": "22G1",
    "20FT": "22G1",
    "20HC": "25G1",
    "40GP": "42G1",
    "40DV": "42G1",
    "40DC": "42G1",
    "40FT": "42G1",
    "40HC": "45G1",
    "40HQ": "45G1",
    "45HC": "L5G1",
    "45HQ": "L5G1",
    "45FT": "L5G1",
}
#: ISO 6346 size-type: length code, height/width code, type group letter, type digit.
_ISO_TYPE = re.compile(r"^[1234BCDEFGHKLMNP][0245689CDEFLMNP][A-Z][0-9]$")
_HS_DIGITS = re.compile(r"^[0-9]{4,10}$")
#: Fields an officer can fill in, for "did you mean" (aliases included).
_FIELDS = (
    "hs_code",
    "commodity",
    "declared_commodity",
    "gross_weight_kg",
    "container_type",
    "declared_empty",
    "packages",
    "gd_number",
    "container_number",
    "seal",
)
#: What to do about a bad value, by field.
_FIX = {
    "hs_code": 'write 4 to 10 digits of the HS 2022 code as text, e.g. "6907.21"',
    "commodity": 'write the goods in words, e.g. "ceramic tiles"',
    "gross_weight_kg": "give the gross mass (goods, packing and container) in kg, e.g. 24500",
    "container_type": "give the ISO 6346 size-type (22G1, 42G1, 45G1, L5G1) or 20GP/40GP/40HC",
    "declared_empty": "true or false",
    "packages": "a whole number of packages, 0 or more",
}


class Found(enum.StrEnum):
    """How the declared goods were found in the HS table."""

    HS_CODE = "hs code"
    TEXT = "text"
    UNKNOWN = "unknown"
    EMPTY = "declared empty"


class GoodsDeclaration(BaseModel):
    """One Goods Declaration, validated.

    Attributes:
        hs_code: HS code digits ("020230"; "" when not declared); dots and spaces removed.
        commodity: The goods in words, informative (input alias ``declared_commodity``).
        gross_weight_kg: Declared gross mass in kg, 0 < m < 60 000; None when not declared.
        container_type: ISO 6346 size-type code ("22G1", "45G1", "L5G1"); "" when not declared.
        declared_empty: The container is declared empty (also when the commodity is "empty").
        packages: Number of packages, None when not declared.
        gd_number: The declaration's number.
        container_number: ISO 6346 container number as declared.
        seal: Seal number as declared.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    hs_code: str = ""
    commodity: str = Field(
        default="", validation_alias=AliasChoices("commodity", "declared_commodity")
    )
    gross_weight_kg: float | None = Field(default=None, strict=True)
    container_type: str = ""
    declared_empty: bool = Field(default=False, strict=True)
    packages: int | None = Field(default=None, strict=True, ge=0)
    gd_number: str = ""
    container_number: str = ""
    seal: str = ""

    @field_validator(
        "hs_code",
        "commodity",
        "container_type",
        "gd_number",
        "container_number",
        "seal",
        mode="before",
    )
    @classmethod
    def _none_is_blank(cls, v: Any) -> Any:
        return "" if v is None else v

    @field_validator("hs_code")
    @classmethod
    def _hs(cls, v: str) -> str:
        if not v:
            return ""
        code = normalise_hs(v)
        if not _HS_DIGITS.match(code):
            hint = (
                f" (a leading zero lost? chapters 01-09 are written '0{code}')"
                if code.isdigit() and len(code) in (3, 5)
                else ""
            )
            raise ValueError(f"HS code {v!r} is not 4 to 10 digits{hint}")
        if code[:2] in ("00", "77"):
            raise ValueError(f"HS code {v!r}: chapter {code[:2]} does not exist in HS 2022")
        return code

    @field_validator("gross_weight_kg")
    @classmethod
    def _gross(cls, v: float | None) -> float | None:
        if v is not None and not 0.0 < v < MAX_GROSS_KG:
            raise ValueError(f"{v:g} kg is impossible (0 < gross < {MAX_GROSS_KG:.0f} kg)")
        return v

    @field_validator("container_type")
    @classmethod
    def _ctype(cls, v: str) -> str:
        if not v:
            return ""
        key = re.sub(r"[\s'\"-]", "", v.upper()).replace("FEET", "FT")
        key = _SHORT_TYPES.get(key, key)
        if not _ISO_TYPE.match(key):
            raise ValueError(f"unknown container type {v!r}")
        return key

    @model_validator(mode="before")
    @classmethod
    def _commodity_empty(cls, data: Any) -> Any:
        # the simulator and older GDs write an empty container as the commodity "empty"
        if isinstance(data, dict):
            for key in ("commodity", "declared_commodity"):
                v = data.get(key)
                if isinstance(v, str) and v.strip().lower() == "empty":
                    data = {k: x for k, x in data.items() if k != key}
                    data.setdefault("declared_empty", True)
        return data

    @model_validator(mode="after")
    def _empty_has_no_goods(self) -> GoodsDeclaration:
        if self.declared_empty and (self.hs_code or self.commodity):
            raise ValueError(
                f"declared empty but declares goods (HS {self.hs_code or '-'},"
                f" {self.commodity or '-'!r})"
            )
        return self

    @property
    def chapter(self) -> str:
        """The HS chapter (2 digits), "" without an HS code."""
        return self.hs_code[:2]

    @property
    def heading(self) -> str:
        """The HS heading (4 digits), "" without an HS code."""
        return self.hs_code[:4]

    @property
    def subheading(self) -> str:
        """The HS subheading (6 digits), "" when the code has fewer digits."""
        return self.hs_code[:6] if len(self.hs_code) >= 6 else ""

    @property
    def container_model(self) -> str:
        """The ATR's container model ("20GP", "40GP", "40HC", "45HC"), "" when not declared."""
        t = self.container_type
        if not t:
            return ""
        high = t[1] in "5689"
        return {"2": "20", "4": "40", "L": "45"}.get(t[0], t[0]) + ("HC" if high else "GP")


def _message(err: Mapping[str, Any]) -> tuple[str, str]:
    loc = [str(p) for p in err.get("loc", ())]
    name = loc[0] if loc else ""
    kind = str(err.get("type", ""))
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(name, _FIELDS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (
            f"unknown GD field {name!r}{hint}",
            f"use the GD fields {', '.join(_FIELDS)}; remove or rename {name!r}",
        )
    field = "commodity" if name == "declared_commodity" else name
    fix = _FIX.get(field, "give text")
    if kind == "value_error":
        ctx = err.get("ctx") or {}
        text = str(ctx.get("error", err.get("msg", "")))
        if not name:
            return f"GD: {text}", "declare either goods or an empty container, not both"
        return f"GD field {name!r}: {text}", fix
    got = err.get("input")
    return f"GD field {name!r}: {err.get('msg', 'invalid')} (got {got!r})", fix


def parse_gd(doc: Mapping[str, Any]) -> GoodsDeclaration:
    """Validate a GD object.

    Args:
        doc: The GD's fields as decoded from JSON: ``hs_code`` (text), ``commodity`` or
            ``declared_commodity``, ``gross_weight_kg`` (number, kg), ``container_type``,
            ``declared_empty`` (true/false), ``packages`` (integer), ``gd_number``,
            ``container_number``, ``seal``; every one optional.

    Returns:
        The declaration, normalised.

    Raises:
        AtrInputError: An unknown field (with the closest known one), a wrong type or an
            impossible value; the message names the field, ``fix`` says what to write.
    """
    if not isinstance(doc, Mapping):
        raise AtrInputError(
            f"the GD is a {type(doc).__name__}, not an object",
            fix='give a JSON object, e.g. {"hs_code": "6907.21", "gross_weight_kg": 24500}',
        )
    try:
        return GoodsDeclaration.model_validate(dict(doc))
    except ValidationError as exc:
        errs = exc.errors()
        msg, fix = _message(errs[0])
        if len(errs) > 1:
            msg += f" (and {len(errs) - 1} more)"
        raise AtrInputError(msg, fix=fix) from None


@dataclass(frozen=True, slots=True)
class DeclaredGoods:
    """The declared goods as found in the HS table.

    Attributes:
        heading: The table row's code (2, 4 or 6 digits); "" when unknown or declared empty.
        expectation: What the goods look like in the image; None when unknown.
        found: How they were found (HS code, commodity text, unknown, declared empty).
        reason: One line in an officer's words saying how.
        declaration: The GD they come from.
    """

    heading: str
    expectation: HsExpectation | None
    found: Found
    reason: str
    declaration: GoodsDeclaration

    @property
    def label(self) -> str:
        """How the check names the goods.

        ``"6907 ceramic tiles"`` when found by code, ``"'tiles' (read as 6907 ceramic
        tiles)"`` when read from text, else the declared text or code.
        """
        d = self.declaration
        if self.expectation is None:
            return d.commodity or (f"HS {d.hs_code}" if d.hs_code else "no commodity")
        row = f"{self.heading} {self.expectation.description}"
        return f"{d.commodity!r} (read as {row})" if self.found is Found.TEXT else row


def resolve(gd: GoodsDeclaration) -> DeclaredGoods:
    """Find the declared goods in the HS table.

    The HS code wins; a code the table does not hold falls back to the commodity text,
    matched by keywords (``_hs.match_text``); neither gives an unknown commodity.

    Args:
        gd: A parsed declaration.

    Returns:
        The goods, how they were found and why.
    """
    if gd.declared_empty:
        return DeclaredGoods("", None, Found.EMPTY, "declared empty", gd)
    text = gd.commodity
    by_text = match_text(text) if text else None
    if gd.hs_code:
        exp = expectation(gd.hs_code)
        if exp is not None:
            reason = f"HS {gd.hs_code} is {exp.level} {exp.heading} ({exp.description})"
            if by_text is not None and by_text.heading[:2] != exp.heading[:2]:
                reason += f"; the commodity text {text!r} reads as {by_text.description}"
            return DeclaredGoods(exp.heading, exp, Found.HS_CODE, reason, gd)
        if by_text is not None:
            return DeclaredGoods(
                by_text.heading,
                by_text,
                Found.TEXT,
                f"HS {gd.hs_code} is not in the table; {text!r} read from text as"
                f" {by_text.heading} ({by_text.description})",
                gd,
            )
        return DeclaredGoods(
            "", None, Found.UNKNOWN, f"HS {gd.hs_code} is not in the table: unknown commodity", gd
        )
    if by_text is not None:
        return DeclaredGoods(
            by_text.heading,
            by_text,
            Found.TEXT,
            f"no HS code; {text!r} read from text as {by_text.heading} ({by_text.description})",
            gd,
        )
    if text:
        return DeclaredGoods(
            "", None, Found.UNKNOWN, f"no HS code and {text!r} matches no heading", gd
        )
    return DeclaredGoods("", None, Found.UNKNOWN, "neither HS code nor commodity declared", gd)
