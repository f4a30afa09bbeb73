"""The configuration examples in docs/install.md load as written, so the guide stays true."""

from __future__ import annotations

import re
from pathlib import Path

from central._uptime import Sla
from core.config import CentralConfig, EdgeConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "install.md"


def test_install_examples_load(tmp_path: Path) -> None:
    central, national, sla, edge = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    (tmp_path / "central.toml").write_text(central)
    c = CentralConfig.load(tmp_path / "central.toml")
    assert c.state_dir == Path("/var/lib/nii/central") and c.key == tmp_path / "cir.key"
    assert (c.cir, c.blobs) == ("", "file")
    (tmp_path / "central.toml").write_text(central + national)
    c = CentralConfig.load(tmp_path / "central.toml")
    assert c.cir.startswith("postgresql://") and c.blobs == "s3://nii-cir/karachi"
    assert c.s3_credentials == tmp_path / "s3.ini"
    (tmp_path / "sla.toml").write_text(sla)
    assert Sla.load(tmp_path / "sla.toml").maintenance[0][0] == "kict-1"
    (tmp_path / "edge.toml").write_text(edge)
    e = EdgeConfig.load(tmp_path / "edge.toml")
    assert e.state_dir == Path("/var/lib/nii/edge-kict-1") and e.mqtt is not None
    assert e.scanners[0].interlocks and e.scanners[0].dosimeters == ["zone-a"]
