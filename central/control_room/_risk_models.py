"""The risk-system API's documents: one pydantic model each, and the OpenAPI document
made of them (``central.control_room._risk``; docs/risk-api.md).

Every request document is strict (no type coercion: ``"1"`` is not a number, ``true``
not a 1) and closed (``extra="forbid"``); strings have lengths and patterns, and free
text (names, descriptions, criteria) is stored without leading and trailing white
space and must not be blank. A GD's HS codes and container size-types are checked and
normalised by the ATR's GD model (``central.atr._declaration``: chapters 01 to 97 of
HS 2022, and 98 and 99, which the HS Convention leaves to national use), its container
numbers by their ISO 6346 check digit (``core.iso6346``).

Query parameters are text: an integer one is plain ASCII digits (``^[0-9]{1,19}$``; no
sign, space, ``_``, ``.`` or other script's digits), so that ``after= 1`` or
``limit=1_0`` is a 400, not silently read as a number.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from central.atr._declaration import MAX_GROSS_KG, parse_gd
from central.atr._model import AtrInputError
from core import iso6346

__all__ = [
    "API",
    "EVENTS_DEFAULT",
    "EVENTS_MAX",
    "GD_NUMBER",
    "MAX_BODY",
    "MAX_GDS",
    "SCANS_MAX",
    "EventsOut",
    "EventsQuery",
    "GdIn",
    "GdOut",
    "ScansOut",
    "ScansQuery",
    "SubmitIn",
    "SubmitOut",
    "openapi",
]

#: The API's path prefix (its version is in the path: a breaking change is a /v2).
API = "/api/risk/v1"
#: The largest request body taken, bytes: 100 GDs of 200 items fit well under it.
MAX_BODY = 1 << 20
#: GDs in one submission.
MAX_GDS = 100
#: Events in one answer: the default and the most a poll may ask for.
EVENTS_DEFAULT, EVENTS_MAX = 100, 1000
#: Scans in one lookup answer.
SCANS_MAX = 200

# -- the documents (one pydantic model each; the OpenAPI document is made of them) -------

#: A GD number: capitals, digits, '.', '-' (no '/': it is a path segment), 3 to 48.
GD_NUMBER = r"^[A-Z0-9][A-Z0-9.-]{2,47}$"
#: Free text: no control characters, and none of the Unicode controls that reorder or
#: hide what is shown (bidi embeddings, overrides and isolates; line separators)
_TEXT = r"^[^\x00-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]*$"
#: A code (declarant's tax number, seal, terminal): letters, digits, '.', '/', '-'.
_CODE = r"^[A-Za-z0-9./-]*$"
#: An integer query parameter: plain ASCII digits (no sign: no parameter is negative).
_DIGITS = re.compile(r"^[0-9]{1,19}$")


def _not_blank(v: str) -> str:
    """``v`` without leading and trailing white space.

    Raises:
        ValueError: nothing is left (blank text names or describes nothing).
    """
    v = v.strip()
    if not v:
        raise ValueError("must not be blank (white space only)")
    return v


def _digits(v: Any) -> Any:
    """A query parameter's text, refused unless plain ASCII digits (pydantic alone would
    read ``" 1"``, ``"+1"``, ``"1_0"`` and ``"1.0"`` as numbers).

    Raises:
        ValueError: text that is not 1 to 19 ASCII digits.
    """
    if isinstance(v, str) and not _DIGITS.match(v):
        raise ValueError(f"must be plain digits 0-9, got {v[:40]!r}")
    return v


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _atr_checked(field: str, value: Any) -> Any:
    """``value`` of GD field ``field`` as the ATR's GD model normalises it.

    Raises:
        ValueError: the ATR's model refuses it (its message).
    """
    try:
        return getattr(parse_gd({field: value}), field)
    except AtrInputError as exc:
        raise ValueError(f"{exc.message} ({exc.fix})") from None


class ContainerIn(_In):
    """One container the GD covers."""

    number: str = Field(
        pattern=iso6346.PATTERN,
        description="ISO 6346 container number, check digit checked (MSKU1234565)",
    )
    size_type: str = Field(
        default="",
        max_length=8,
        pattern=r"^[A-Za-z0-9]*$",
        description="ISO 6346 size-type (22G1, 42G1, 45G1, L5G1) or 20GP/40GP/40HC/45HC; "
        "stored as the ISO code; '' when not declared",
    )
    seal: str = Field(default="", max_length=40, pattern=_CODE, description="seal number")

    @field_validator("number")
    @classmethod
    def _check_digit(cls, v: str) -> str:
        if not iso6346.is_valid(v):
            raise ValueError(
                f"{v}: the check digit should be {iso6346.check_digit(v[:10])} (ISO 6346)"
            )
        return v

    @field_validator("size_type")
    @classmethod
    def _size_type(cls, v: str) -> str:
        return str(_atr_checked("container_type", v)) if v else ""


class ItemIn(_In):
    """One goods item of the GD."""

    hs_code: str = Field(
        pattern=r"^[0-9]{4}[0-9.]{0,9}$",
        description="HS code, 4 to 10 digits, dots allowed (6907.21, 69072100); stored as digits",
    )
    description: str = Field(min_length=1, max_length=500, pattern=_TEXT)
    gross_weight_kg: float = Field(gt=0, lt=MAX_GROSS_KG, allow_inf_nan=False)
    net_weight_kg: float | None = Field(default=None, gt=0, lt=MAX_GROSS_KG, allow_inf_nan=False)
    packages: int | None = Field(default=None, ge=0, le=10_000_000)
    origin: str = Field(
        default="", pattern=r"^([A-Z]{2})?$", description="country of origin, ISO 3166 alpha-2"
    )

    @field_validator("hs_code")
    @classmethod
    def _hs(cls, v: str) -> str:
        return str(_atr_checked("hs_code", v))

    @field_validator("description")
    @classmethod
    def _description(cls, v: str) -> str:
        return _not_blank(v)

    @model_validator(mode="after")
    def _net(self) -> ItemIn:
        if self.net_weight_kg is not None and self.net_weight_kg > self.gross_weight_kg:
            raise ValueError(
                f"net weight {self.net_weight_kg:g} kg is more than the gross "
                f"{self.gross_weight_kg:g} kg"
            )
        return self


class DeclarantIn(_In):
    """Who declared the goods."""

    name: str = Field(min_length=1, max_length=200, pattern=_TEXT)
    id: str = Field(
        default="", max_length=40, pattern=_CODE, description="tax or registration number"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _not_blank(v)


class SelectionIn(_In):
    """What the RMS decided for the GD (SOP 2.4, 4.1)."""

    tier: Literal["high", "targeted", "random", "none"] = Field(
        description="NII selection tier (SOP 4.1); none: not selected for scanning"
    )
    channel: Literal["green", "yellow", "red"] = Field(
        description="the RMS's clearance channel: green release, yellow documents, red examination"
    )
    criteria: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="the criteria that selected it, in the RMS's words",
    )

    @field_validator("criteria")
    @classmethod
    def _criteria(cls, v: list[str]) -> list[str]:
        for c in v:
            if not 0 < len(c.strip()) <= 200 or not re.fullmatch(_TEXT, c):
                raise ValueError("each criterion is 1 to 200 characters of text, not blank")
        return [c.strip() for c in v]


class GdIn(_In):
    """One version of a Goods Declaration, with its selection."""

    gd_number: str = Field(pattern=GD_NUMBER, description="the GD's number (KAPE-HC-1234)")
    version: int = Field(
        ge=1,
        le=9999,
        description="1, then each amendment one more: a version that skips one (v3 "
        "before v2 is stored, or a first version other than 1) is refused (409)",
    )
    declarant: DeclarantIn
    terminal: str = Field(default="", max_length=40, pattern=_CODE)
    containers: list[ContainerIn] = Field(min_length=1, max_length=100)
    items: list[ItemIn] = Field(min_length=1, max_length=200)
    selection: SelectionIn
    att: bool = Field(
        description="Afghan Transit Trade: scanned at entry and exit and compared (SOP 2.4)"
    )

    @model_validator(mode="after")
    def _whole(self) -> GdIn:
        numbers = [c.number for c in self.containers]
        twice = sorted({n for n in numbers if numbers.count(n) > 1})
        if twice:
            raise ValueError(f"container(s) {', '.join(twice)} named twice")
        gross = sum(i.gross_weight_kg for i in self.items)
        most = MAX_GROSS_KG * len(self.containers)
        if gross >= most:
            raise ValueError(
                f"the items weigh {gross:g} kg gross: more than {len(self.containers)} "
                f"container(s) hold ({most:g} kg)"
            )
        return self

    @property
    def scan_required(self) -> bool:
        """Whether the GD's containers are to be scanned: selected, or ATT."""
        return self.att or self.selection.tier != "none"


class SubmitIn(_In):
    """A submission: GDs, each version at most once."""

    declarations: list[GdIn] = Field(min_length=1, max_length=MAX_GDS)

    @model_validator(mode="after")
    def _once(self) -> SubmitIn:
        keys = [(g.gd_number, g.version) for g in self.declarations]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(
                "given twice in one submission: " + ", ".join(f"{n} v{v}" for n, v in twice)
            )
        return self


class StoredOut(_Out):
    gd_number: str
    version: int
    status: Literal["stored", "unchanged"]
    received_ns: int = Field(description="when the CIR first stored this version (ns)")


class SubmitOut(_Out):
    results: list[StoredOut]


class ErrorOut(_Out):
    error: str


class VerdictOut(_Out):
    verdict: Literal["green", "yellow", "red", "none"] = Field(
        description="the ATR's level; none: the scan could not be analysed"
    )
    findings: int
    model: str | None = None


class DecisionOut(_Out):
    id: int
    kind: Literal["local", "override", "adjudication", "release"]
    verdict: Literal["green", "yellow", "red"]
    mandate: bool = Field(description="a Red decision: Physical Examination Mandate")
    by: str
    role: str
    created_ns: int
    reason: str
    corrects: int | None
    doc: dict[str, Any] = Field(
        description="the signed document (its marks cite the image); signature covers "
        "its canonical JSON: sorted keys, no spaces, UTF-8"
    )
    signature: str = Field(description="Ed25519 signature, base64")
    key_id: str = Field(description="the control room's signing key")


class AttOut(_Out):
    ref_a: int | None
    ref_b: int
    result: str = Field(description="release, hold, unpaired or not compared")
    hold: bool = Field(description="Contravening Unit: the cargo is on HOLD")
    status: str | None = None
    reason: str | None = None
    seal_a: str | None = None
    seal_b: str | None = None
    held: bool | None = Field(
        default=None,
        description="in lookups: on HOLD and not released by a central RIAC analyst",
    )


class EventOut(_Out):
    id: str = Field(
        description="stable id of what happened (the row it comes from): receivers drop "
        "an event whose id they have"
    )
    cursor: int = Field(description="position in this CIR's outbox: poll with after=it")
    type: Literal["atr.verdict", "decision", "att.result", "att.hold", "att.released"]
    ref: int = Field(description="the scan's reference in the CIR")
    scanner: str | None
    scan_id: int | None
    container: str | None
    gd_number: str | None
    created_ns: int
    verdict: VerdictOut | None = None
    decision: DecisionOut | None = None
    att: AttOut | None = None


class EventsOut(_Out):
    events: list[EventOut]
    cursor: int = Field(description="the last event's cursor (``after`` when none)")
    more: bool = Field(description="more events wait: poll again at once")


class SelectionOut(_Out):
    gd_number: str
    version: int
    tier: str
    channel: str
    att: bool
    scan_required: bool
    received_ns: int
    matched_by: Literal["gd_number", "container"]
    container_listed: bool | None = Field(
        default=None,
        description="whether this version of the GD lists the scan's container: false "
        "when the GD number the scan carries names other containers (warn the officer); "
        "null when the scan has no container number",
    )


class ScanOut(_Out):
    ref: int
    scanner: str
    scan_id: int | None
    container: str | None
    gd_number: str | None
    status: str | None
    started_ns: int | None
    finished_ns: int | None
    site: str | None
    atr: VerdictOut | None
    decision: DecisionOut | None = Field(description="the latest decision")
    att: AttOut | None
    selection: SelectionOut | None


class ScansOut(_Out):
    scans: list[ScanOut]


class GdVersionOut(_Out):
    version: int
    received_ns: int
    client: str
    declaration: GdIn


class GdOut(_Out):
    gd_number: str
    current: int | None = Field(description="the highest version received")
    versions: list[GdVersionOut]
    scans: list[ScanOut]


class EventsQuery(_Out):
    after: int = Field(default=0, ge=0, le=2**62, description="the last cursor you have")
    limit: int = Field(default=EVENTS_DEFAULT, ge=1, le=EVENTS_MAX)

    @field_validator("after", "limit", mode="before")
    @classmethod
    def _plain(cls, v: Any) -> Any:
        return _digits(v)


class ScansQuery(_Out):
    gd: str | None = Field(default=None, pattern=GD_NUMBER)
    container: str | None = Field(default=None, pattern=iso6346.PATTERN)
    limit: int = Field(default=50, ge=1, le=SCANS_MAX)

    @field_validator("limit", mode="before")
    @classmethod
    def _plain(cls, v: Any) -> Any:
        return _digits(v)


# -- the OpenAPI document -------------------------------------------------------------------


def _params(model: type[BaseModel]) -> list[dict[str, Any]]:
    props = model.model_json_schema()["properties"]
    out = []
    for name, field in model.model_fields.items():
        schema = dict(props[name])
        desc = schema.pop("description", field.description)
        schema.pop("title", None)
        if "anyOf" in schema:  # "X or null": a query parameter is absent instead
            schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
            schema.pop("default", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
        if desc:
            param["description"] = desc
        out.append(param)
    return out


def openapi() -> dict[str, Any]:
    """The API's OpenAPI 3.1 document, made from the pydantic models of this module."""
    from pydantic.json_schema import models_json_schema

    _, defs = models_json_schema(
        [
            (SubmitIn, "validation"),
            (SubmitOut, "serialization"),
            (EventsOut, "serialization"),
            (GdOut, "serialization"),
            (ScansOut, "serialization"),
            (ErrorOut, "serialization"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    schemas = defs.get("$defs", {})

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        name = model.__name__
        if name not in schemas:  # a model whose input and output schemas differ
            name = next(k for k in schemas if k.startswith(name + "-"))
        return {"$ref": f"#/components/schemas/{name}"}

    def answer(model: type[BaseModel], what: str) -> dict[str, Any]:
        return {"description": what, "content": {"application/json": {"schema": ref(model)}}}

    def errors(*codes: int) -> dict[str, Any]:
        words = {
            400: "the request does not fit the schema, or a query parameter is unknown, "
            "given twice or malformed; nothing was changed",
            401: "no token, or an unknown or revoked one",
            404: "not found (or the control room has no [risk_system] table)",
            409: "a conflict (a stored version with other content, a version that "
            "skips one, a cursor past the last event); nothing was changed",
            413: f"the body is larger than {MAX_BODY} bytes",
            415: "the body is not application/json",
            503: "the token file is missing, unreadable or has a bad line (logged at the "
            "control room)",
        }
        return {str(c): answer(ErrorOut, words[c]) for c in codes}

    common = (400, 401, 404, 503)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "NII control room: risk-system API",
            "version": "1",
            "description": "What the customs Risk Management System sends (Goods "
            "Declarations and their selection) and receives (ATR verdicts, decisions, "
            "Physical Examination Mandates, ATT HOLDs). See docs/risk-api.md.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            f"{API}/gds": {
                "post": {
                    "operationId": "submitGds",
                    "summary": "Submit GDs and their selection (idempotent per number and version)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": ref(SubmitIn)}},
                    },
                    "responses": {
                        "200": answer(SubmitOut, "each GD stored, or unchanged"),
                        **errors(*common, 409, 413, 415),
                    },
                }
            },
            f"{API}/gds/{{gd_number}}": {
                "get": {
                    "operationId": "getGd",
                    "summary": "A GD's versions and its scans with verdict, decision, HOLD",
                    "parameters": [
                        {
                            "name": "gd_number",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": GD_NUMBER},
                        },
                    ],
                    "responses": {"200": answer(GdOut, "the GD"), **errors(*common)},
                }
            },
            f"{API}/events": {
                "get": {
                    "operationId": "getEvents",
                    "summary": "The events after a cursor, oldest first",
                    "parameters": _params(EventsQuery),
                    "responses": {
                        "200": answer(EventsOut, "the events"),
                        **errors(*common, 409),
                    },
                }
            },
            f"{API}/scans": {
                "get": {
                    "operationId": "getScans",
                    "summary": "Scans by GD number and/or container number",
                    "parameters": _params(ScansQuery),
                    "responses": {"200": answer(ScansOut, "the scans"), **errors(*common)},
                }
            },
            f"{API}/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "the OpenAPI document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
    }
