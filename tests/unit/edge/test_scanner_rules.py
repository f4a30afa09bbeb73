"""Which scanner a control link reaches, and when a disarmed scanner is re-armed."""

from __future__ import annotations

from typing import Any

from edge._scanner_rules import DISARMED_CONFIRM_S, check_identity, should_rearm


def test_the_first_serial_seen_is_remembered() -> None:
    # the control link alone: usable (a beam stop must work), but not remembered
    v = check_identity("scanner1", "", "", "SIM0004-scanner1")
    assert v.ok and v.remember == "" and not v.alarm
    v = check_identity("scanner1", "", "SIM0004-scanner1", "SIM0004-scanner1")
    assert v.ok and v.remember == "SIM0004-scanner1" and not v.alarm
    v = check_identity("scanner1", "", "SIM0004-scanner1", "")
    assert v.ok and v.remember == "SIM0004-scanner1"
    v = check_identity("scanner1", "SIM0004-scanner1", "SIM0004-scanner1", "SIM0004-scanner1")
    assert v.ok and v.remember == "" and not v.alarm


def test_a_control_link_that_reaches_another_scanner_than_the_data_link_is_not_used() -> None:
    v = check_identity("scanner1", "", "SIM0004-scanner1", "SIM0005-scanner2")
    assert not v.ok and v.alarm == "scanner_mismatch"
    assert v.message == (
        "the control link of scanner1 reaches scanner SIM0005-scanner2, its data link is "
        "SIM0004-scanner1: check the serial cable"
    )
    # the remembered one agrees with the data link: still a mismatch
    v = check_identity("scanner1", "SIM0004-scanner1", "SIM0004-scanner1", "SIM0005-scanner2")
    assert not v.ok and v.alarm == "scanner_mismatch"


def test_a_control_link_that_differs_from_the_remembered_scanner_is_not_used() -> None:
    # the data link has not said its serial yet: the remembered one decides
    v = check_identity("scanner1", "SIM0004-scanner1", "", "SIM0005-scanner2")
    assert not v.ok and v.alarm == "scanner_mismatch" and "SIM0004-scanner1" in v.message


def test_a_scanner_replaced_on_purpose_is_accepted_when_both_links_agree() -> None:
    v = check_identity("scanner1", "SIM0004-scanner1", "SIM0009-new", "SIM0009-new")
    assert v.ok and v.remember == "SIM0009-new" and v.alarm == "scanner_replaced"
    assert "SIM0004-scanner1" in v.message and "SIM0009-new" in v.message


def rearm(**over: Any) -> bool:
    kw: dict[str, Any] = dict(
        reported_armed=False,
        reported_state="idle",
        disarmed_s=DISARMED_CONFIRM_S,
        want_arm=True,
        may_arm=True,
        control_up=True,
        spool_high=False,
        storage_error=False,
        maintenance=False,
    )
    kw.update(over)
    return should_rearm(**kw)


def test_an_idle_disarmed_scanner_the_edge_wants_armed_is_re_armed() -> None:
    assert rearm()


def test_no_re_arm_when_armed_busy_or_in_a_state_of_its_own() -> None:
    assert not rearm(reported_armed=True)
    for state in ("armed", "scanning", "fault", "interlock"):
        assert not rearm(reported_state=state)


def test_no_re_arm_on_a_single_status_that_may_predate_our_own_arm() -> None:
    assert not rearm(disarmed_s=0.0)
    assert not rearm(disarmed_s=DISARMED_CONFIRM_S - 0.1)


def test_no_re_arm_when_the_edge_itself_wants_it_disarmed() -> None:
    assert not rearm(want_arm=False)  # arm = false, or rearm = false after a trip
    assert not rearm(may_arm=False)  # unsafe
    assert not rearm(control_up=False)  # down, or another scanner's cable
    assert not rearm(spool_high=True)  # new scans refused for a full spool
    assert not rearm(storage_error=True)
    assert not rearm(maintenance=True)
