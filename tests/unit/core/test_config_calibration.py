"""``[[scanner]] calibration``: read and validated when the edge configuration loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import EdgeConfig
from core.errors import ConfigError

#: a calibration as 'nii atr calibrate' writes it: the reference scanner's
REFERENCE = Path(__file__).parents[3] / "central" / "atr" / "data" / "reference-scanner.json"


def _edge_toml(folder: Path, scanner_extra: str) -> Path:
    p = folder / "edge.toml"
    p.write_text(
        '[edge]\nid = "edge-a"\nkey = "k.key"\ncir_public = "c.pub"\n\n'
        '[[scanner]]\nid = "gate1"\nserial = "/dev/null"\ndata = "127.0.0.1:7700"\n'
        f"{scanner_extra}"
    )
    return p


def _refused(folder: Path, value: str) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        EdgeConfig.load(_edge_toml(folder, f"calibration = {value}\n"))
    return exc.value


def test_no_calibration_is_no_calibration(tmp_path: Path) -> None:
    sc = EdgeConfig.load(_edge_toml(tmp_path, "")).scanners[0]
    assert sc.calibration is None and sc.calibration_doc is None


def test_calibration_is_read_relative_to_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "cal").mkdir()
    (tmp_path / "cal" / "gate1.json").write_text(REFERENCE.read_text())
    sc = EdgeConfig.load(_edge_toml(tmp_path, 'calibration = "cal/gate1.json"\n')).scanners[0]
    assert sc.calibration == tmp_path / "cal" / "gate1.json"
    assert sc.calibration_doc == json.loads(REFERENCE.read_text())


def test_missing_file_names_scanner_file_and_fix(tmp_path: Path) -> None:
    err = _refused(tmp_path, '"nowhere.json"')
    assert "gate1" in err.message and "nowhere.json" in err.message
    assert "cannot read" in err.message
    assert "nii atr calibrate" in err.fix


def test_not_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    err = _refused(tmp_path, '"bad.json"')
    assert "gate1" in err.message and "bad.json" in err.message and "not JSON" in err.message
    assert "nii atr calibrate" in err.fix


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda d: d.update(format="other/1"), "format is"),
        (lambda d: d.pop("materials"), "missing or malformed"),
        (lambda d: d["materials"][0].update(a_high=[1.0, 0.5]), "unequal or too short"),
        (lambda d: d.update(a_max=99.0), "a_max"),
        (lambda d: d["noise"].update(high=[float("nan"), 1.0]), "not finite"),
    ],
)
def test_invalid_calibration_is_refused(tmp_path: Path, change: object, said: str) -> None:
    doc = json.loads(REFERENCE.read_text())
    change(doc)  # type: ignore[operator]
    (tmp_path / "gate1.json").write_text(json.dumps(doc))
    err = _refused(tmp_path, '"gate1.json"')
    assert "[[scanner]] gate1 calibration" in err.message and "gate1.json" in err.message
    assert said in err.message, err.message
    assert "nii atr calibrate" in err.fix


def test_not_a_string_is_refused(tmp_path: Path) -> None:
    err = _refused(tmp_path, "3")
    assert "calibration" in err.message and "non-empty string" in err.message
