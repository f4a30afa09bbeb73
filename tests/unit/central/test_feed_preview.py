"""``nii control-room tail`` draws each line-block preview as the outline of the cargo."""

from __future__ import annotations

import numpy as np

from central._feed import format_event, preview_shape


def test_the_outline_is_light_where_air_is_and_dark_where_cargo_is() -> None:
    arr = np.full((8, 64), 250, dtype=np.uint8)  # air
    arr[:, 32:] = 10  # the lower half of the fan (the floor side) is dense
    line = preview_shape(arr.tobytes(), [8, 64], width=16)
    assert len(line) == 16
    assert set(line[:8]) == {" "} and set(line[8:]) == {"█"}, repr(line)


def test_a_preview_that_does_not_fit_its_shape_is_said_so() -> None:
    assert preview_shape(b"\x00" * 10, [8, 64]) == ""
    assert preview_shape(b"", "8x64") == ""
    doc = {"scanner": "s1", "scan_id": 3, "first_line": 0, "lines": 8, "shape": [8, 64]}
    assert format_event(b"scan.block", doc, b"\x01" * 5).endswith("(no picture)")
    row = format_event(b"scan.block", doc, bytes(8 * 64))
    assert "|" in row and "(roof to floor)" in row
