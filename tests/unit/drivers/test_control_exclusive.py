"""The serial control link opens its device for one process only (drivers.lsp._control)."""

from __future__ import annotations

import os

import pytest

from core.errors import DriverError
from drivers.lsp import LspControl


async def test_a_second_open_of_the_same_device_is_refused_by_name() -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    first, second = LspControl(path), LspControl(path)
    try:
        await first.open()
        with pytest.raises(DriverError) as err:
            await second.open()
        assert second.busy and not first.busy
        assert path in err.value.message and "another process" in err.value.message
        assert err.value.fix
        await first.close()
        await second.open()  # free again once the first let go
        assert not second.busy
    finally:
        await first.close()
        await second.close()
        os.close(master)
        os.close(slave)


async def test_an_absent_device_is_not_busy() -> None:
    ctl = LspControl("/dev/nonexistent-tty-for-test")
    with pytest.raises(DriverError) as err:
        await ctl.open()
    assert not ctl.busy and "/dev/nonexistent-tty-for-test" in err.value.message
