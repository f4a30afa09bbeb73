"""Two edges with the same id on one broker never share an MQTT client id (kind 5)."""

from __future__ import annotations

from pathlib import Path

from core.config import MqttConfig, ScannerConfig
from edge._safety import SafetyMonitor


def test_client_ids_differ_per_process_and_monitor() -> None:
    sc = ScannerConfig(id="scanner1", serial=Path("/dev/null"), data_host="h", data_port=1)
    mqtt = MqttConfig(host="127.0.0.1", port=1883, site="s")
    a = SafetyMonitor(mqtt, [sc], edge_id="edge-a")
    b = SafetyMonitor(mqtt, [sc], edge_id="edge-a")
    assert a.client_id != b.client_id
    assert a.client_id.startswith("nii-edge-a-safety-") and len(a.client_id) <= 64
