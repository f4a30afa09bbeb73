"""The demo's site telemetry: the edge config it writes arms only on the simulated sensors."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import EdgeConfig
from core.errors import NiiError
from nii._demo import write_edge_config
from nii._demo_site import DOSIMETERS, INTERLOCKS, start_broker

STATUS: dict[str, object] = {
    "scanners": [
        {
            "name": f"scanner{i}",
            "serial": f"sim/scanner{i}.tty",
            "data_host": "127.0.0.1",
            "data_port": 7700 + i,
        }
        for i in (1, 2)
    ]
}


def test_edge_config_with_and_without_broker(tmp_path: Path) -> None:
    cfg = EdgeConfig.load(write_edge_config(tmp_path, "tcp://127.0.0.1:7600", STATUS, 18830))
    assert cfg.mqtt is not None and (cfg.mqtt.host, cfg.mqtt.port) == ("127.0.0.1", 18830)
    for sc in cfg.scanners:
        assert sc.interlocks == list(INTERLOCKS) and sc.dosimeters == list(DOSIMETERS)
    cfg = EdgeConfig.load(write_edge_config(tmp_path, "tcp://127.0.0.1:7600", STATUS))
    assert cfg.mqtt is None and all(not sc.interlocks for sc in cfg.scanners)


def test_no_broker_is_said_plainly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NII_DEMO_BROKER", "none")
    b = start_broker(tmp_path)
    assert (b.port, b.kind, b.procs) == (None, "none", [])
    assert b.note.startswith("OFF: no MQTT broker") and "apt-get install mosquitto" in b.note
    monkeypatch.setenv("NII_DEMO_BROKER", "rabbit")
    with pytest.raises(NiiError, match="not a choice"):
        start_broker(tmp_path)
