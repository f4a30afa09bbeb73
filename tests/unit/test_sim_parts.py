"""Simulator parts that need no sockets: image sources, configuration, the command line."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import pytest

from core import iso6346
from core.errors import ConfigError
from firmware_sim import (
    FaultConfig,
    ImageSource,
    ReplaySource,
    SimConfig,
    SimScanner,
    SyntheticSource,
)
from firmware_sim._scanner import _container_code, _renumbered
from firmware_sim.cli import build_configs, register


def test_synthetic_source_shapes_and_determinism() -> None:
    src = SyntheticSource()
    assert isinstance(src, ImageSource)
    a = src.scan(1, 7, 64, 300)
    b = src.scan(1, 7, 64, 300)
    c = src.scan(1, 8, 64, 300)
    assert a.high.shape == a.low.shape == (300, 64)
    assert a.high.dtype == np.uint16 and a.dark.shape == a.air.shape == (2, 64)
    assert np.array_equal(a.high, b.high) and not np.array_equal(a.high, c.high)
    # the container attenuates: its middle is darker than the open air before it
    assert a.high[150].mean() < a.high[2].mean()
    assert (a.low <= a.air[1].max() + 1000).all()
    packed = a.packed()
    assert packed.shape == (300, 128) and packed.dtype == np.dtype("<u2")
    assert np.array_equal(packed[5, :64], a.high[5]) and np.array_equal(packed[5, 64:], a.low[5])
    assert a.packed() is packed


def test_replay_source_reuses_images_across_scanners() -> None:
    src = ReplaySource(SyntheticSource(), count=2)
    first = src.scan(0, 1, 32, 50)
    assert src.scan(99, 3, 32, 50) is first  # another scanner, scan 3 = 1 mod 2
    assert src.scan(0, 2, 32, 50) is not first


def test_container_codes_have_valid_check_digits() -> None:
    values = dict(
        zip(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            (*range(10, 11), *range(12, 22), *range(23, 33), *range(34, 39)),  # skip 11's
            strict=True,
        )
    )
    rng = random.Random(4)
    for _ in range(50):
        code = _container_code(rng)
        total = sum(
            (values[ch] if ch.isalpha() else int(ch)) << i for i, ch in enumerate(code[:10])
        )
        assert len(code) == 11 and int(code[10]) == total % 11 % 10


@pytest.mark.parametrize(
    ("kw", "word"),
    [
        ({"channels": 0}, "channels"),
        ({"line_rate": 0.0}, "line_rate"),
        ({"scan_lines": 0}, "scan_lines"),
        ({"faults": FaultConfig(drop_fraction=1.5)}, "drop_fraction"),
    ],
)
def test_bad_config_is_a_config_error(kw: dict[str, object], word: str) -> None:
    with pytest.raises(ConfigError, match=word) as err:
        SimScanner(SimConfig(), **kw)
    assert err.value.fix


def test_unknown_fault_kind() -> None:
    with pytest.raises(ConfigError, match="unknown fault") as err:
        SimScanner(SimConfig()).inject("meteor")
    assert "link_drop" in err.value.fix


def test_register_adds_the_sim_subcommand(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "sim",
            "--scanners",
            "3",
            "--channels",
            "64",
            "--line-rate",
            "1000",
            "--serial-dir",
            str(tmp_path),
            "--data-port-base",
            "41000",
            "--seed",
            "10",
            "--drop",
            "0.01",
            "--dead-channels",
            "3,5",
            "--emit-log-dir",
            str(tmp_path / "logs"),
            "--replay",
            "2",
        ]
    )
    assert callable(args.func)
    configs = build_configs(args)
    assert [c.name for c in configs] == ["scanner1", "scanner2", "scanner3"]
    assert [c.data_port for c in configs] == [41000, 41001, 41002]
    assert [c.seed for c in configs] == [10, 11, 12]
    assert configs[1].serial_link == tmp_path / "scanner2.tty"
    assert configs[2].emit_log == tmp_path / "logs" / "scanner3.emit.log"
    assert configs[0].faults.dead_channels == (3, 5) and configs[0].faults.drop_fraction == 0.01
    assert configs[0].source is configs[1].source  # one replay cache for all
    assert configs[0].channels == 64 and configs[0].line_rate == 1000.0


def test_bad_dead_channels_option() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sim", "--dead-channels", "x"])
    with pytest.raises(ConfigError, match="dead-channels"):
        build_configs(args)


def test_physics_scan_record_names_the_declared_container() -> None:
    """The scan-start record of a physics scan carries what live ATR needs."""
    from firmware_sim.physics import PhysicsSource

    rec = PhysicsSource().scan(1, 3, 128, 64).record
    assert rec["container"] == rec["gd"]["container_number"] == "MSKU0000032"
    assert iso6346.is_valid(rec["container"])  # an RMS can declare it
    assert rec["seal"] == rec["gd"]["seal"]
    assert all(v > 0 for v in rec["pixel_mm"])


def test_two_scanners_of_one_sim_scan_different_containers() -> None:
    """Scanner N's GD container serial is moved on by (N-1) x 100 000, its ISO 6346 check
    digit made anew; gate reading too."""
    from firmware_sim.physics._cargo import container_number

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    ns = parser.parse_args(["sim", "--scanners", "3"])
    bases = [c.container_base for c in build_configs(ns)]
    assert bases == [0, 100_000, 200_000]
    rec = {"gd": {"container_number": "MSKU0000032", "seal": "SL1"}, "container": "MSKU0000032"}
    out = _renumbered(rec, bases[1])
    assert out["container"] == out["gd"]["container_number"] == "MSKU1000037"
    assert out["gd"]["seal"] == "SL1" and rec["container"] == "MSKU0000032"  # a copy
    assert _renumbered(rec, 0) is rec
    assert _renumbered({"container": "XYZ"}, 5) == {"container": "XYZ"}
    # every scanner's numbers are valid and distinct, for as many scans as a demo makes
    seen = set()
    for base in bases:
        for sid in range(1, 2001):
            number = container_number(sid)
            r = _renumbered({"gd": {"container_number": number}, "container": number}, base)
            assert iso6346.is_valid(r["container"]), r
            seen.add(r["container"])
    assert len(seen) == 3 * 2000
    # a source's number of ISO form but a wrong check digit comes out right
    bad = {"gd": {"container_number": "MSKU0000003"}}
    assert iso6346.is_valid(_renumbered(bad, 100_000)["gd"]["container_number"])
