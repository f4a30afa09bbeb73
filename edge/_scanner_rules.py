"""Which scanner a channel serves, and whether it should be re-armed (pure rules).

Two decisions of the channel's control link, written with no sockets and no
tasks (``STYLE.md``) and unit-tested in ``tests/unit/edge/test_scanner_rules.py``:

* :func:`check_identity`: whether the control link reaches the scanner the data
  link reads (a serial cable moved to another scanner must not be used: no arm,
  no beam-off acknowledged for the wrong scanner);
* :func:`should_rearm`: whether a scanner that reports itself disarmed should
  be armed again by the edge (disarmed behind the edge's back).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DISARMED_CONFIRM_S", "IdentityVerdict", "check_identity", "should_rearm"]

DISARMED_CONFIRM_S = 1.5
"""How long (s) a scanner must go on reporting itself disarmed before it is re-armed:
a STATUS sent just before the edge's own ARM (they are sent every second) is not
mistaken for a scanner disarmed behind the edge's back."""


@dataclass(frozen=True, slots=True)
class IdentityVerdict:
    """What the channel does with the serial numbers it has seen."""

    ok: bool
    """Whether the control link may be used."""
    remember: str = ""
    """A serial number to persist as this channel's scanner ("" to keep what is known)."""
    alarm: str = ""
    """``scanner_mismatch``, ``scanner_replaced`` or ""."""
    message: str = ""


def check_identity(scanner: str, known: str, data: str, control: str) -> IdentityVerdict:
    """Whether the control link of ``scanner`` reaches the scanner it serves.

    Args:
        scanner: the channel's scanner id (for the messages).
        known: the serial number persisted for this channel ("" if none yet).
        data: the serial number the data link announced in its SESSION ("" if
            not known yet).
        control: the serial number of the control link's IDN reply ("" if not
            known: nothing to check).

    Returns:
        A serial number is remembered only once a data link announced it (and the
        control link, when known, agrees): the control link alone cannot tell
        whether its cable reaches the right scanner.

        Not ok when the control link's serial differs from the data link's (both
        known) or from the persisted one, unless both links agree on a new one
        (a scanner replaced on purpose: ok, ``scanner_replaced``, remembered).
    """
    if not control:
        return IdentityVerdict(ok=True, remember="" if known or not data else data)
    if data and control != data:
        return IdentityVerdict(
            ok=False,
            alarm="scanner_mismatch",
            message=f"the control link of {scanner} reaches scanner {control}, its data link "
            f"is {data}: check the serial cable",
        )
    if known and control != known:
        if data == control:
            return IdentityVerdict(
                ok=True,
                remember=control,
                alarm="scanner_replaced",
                message=f"{scanner} is now scanner {control} (was {known}): both its data "
                "and control links say so",
            )
        return IdentityVerdict(
            ok=False,
            alarm="scanner_mismatch",
            message=f"the control link of {scanner} reaches scanner {control}, but {scanner} "
            f"is scanner {known}: check the serial cable",
        )
    # remembered only once the data link confirms it: a control link alone could be
    # another scanner's cable from the first start on
    return IdentityVerdict(ok=True, remember="" if known or not data else control)


def should_rearm(
    *,
    reported_armed: bool,
    reported_state: str,
    disarmed_s: float,
    want_arm: bool,
    may_arm: bool,
    control_up: bool,
    spool_high: bool,
    storage_error: bool,
    maintenance: bool,
) -> bool:
    """Whether the edge should arm a scanner whose unsolicited STATUS it just read.

    Args:
        reported_armed: the scanner says it is armed.
        reported_state: its state (``idle``, ``armed``, ``scanning``, ``fault``,
            ``interlock``): only an ``idle`` scanner is armed again; a fault or
            an interlock of its own is for a person to clear.
        disarmed_s: how long it has reported itself disarmed (s); at least
            :data:`DISARMED_CONFIRM_S` before it is re-armed.
        want_arm: the configuration arms it (``arm``, and ``rearm`` after a trip).
        may_arm: the safety guard allows it (every interlock closed, dose low).
        control_up: the control link is up and reaches the right scanner.
        spool_high: new scans are refused for a full spool (the edge disarmed it).
        storage_error: the spool cannot write.
        maintenance: a technician holds the scanner in maintenance.
    """
    if reported_armed or reported_state != "idle" or disarmed_s < DISARMED_CONFIRM_S:
        return False
    return (
        want_arm
        and may_arm
        and control_up
        and not spool_high
        and not storage_error
        and not maintenance
    )
